"""Result records: layout, validation and atomic writes.

One directory per run under ``<results>/runs/<run_id>/`` with ``record.json`` and
``samples.jsonl.gz``. Every file is written to a temporary name and renamed, so a crash never leaves a
half-written record, and a record that fails validation is never written at all.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

SCHEMA_VERSION = 2  # 2: metrics per task ({"rec": {setting: ...}, "conv": ...}), metric_families; see migrations.py
RECORD_FILE = "record.json"
SAMPLES_FILE = "samples.jsonl.gz"

# field -> required type(s); nested checks below.
REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "run_id": str,
    "config_hash": str,
    "config": dict,
    "seeds": dict,
    "code": dict,
    "packages": dict,
    "dataset": dict,
    "components": dict,
    "plugins": list,
    "environment": dict,
    "timings": dict,
    "training": dict,
    "tasks": list,
    "metrics": dict,
    "metric_families": dict,
    "artifacts": dict,
}


class RecordError(ValueError):
    """A record that does not satisfy the schema (never written)."""


def run_id_for(config: dict[str, Any], config_hash: str) -> str:
    parts = [config["dataset"]["name"], config["model"]["name"], config["loss"]["name"],
             config["augmenter"]["name"], f"seed{config['seed']}", config_hash[:10]]
    return "__".join(part.replace("/", "-") for part in parts)


def validate_record(record: dict[str, Any]) -> None:
    for field, kind in REQUIRED_FIELDS.items():
        if field not in record:
            raise RecordError(f"record is missing '{field}'")
        if not isinstance(record[field], kind):
            raise RecordError(f"record field '{field}' must be {kind}, got {type(record[field]).__name__}")
    if record["schema_version"] != SCHEMA_VERSION:
        raise RecordError(f"record schema_version {record['schema_version']} is not {SCHEMA_VERSION}")
    for key in ("name", "fingerprint"):
        if not record["dataset"].get(key):
            raise RecordError(f"record field 'dataset.{key}' is empty")
    for kind in ("model", "loss", "augmenter"):
        if "name" not in record["components"].get(kind, {}):
            raise RecordError(f"record field 'components.{kind}.name' is missing")
    if not record["metrics"]:
        raise RecordError("record has no metrics")
    if sorted(record["metrics"]) != sorted(record["tasks"]):
        raise RecordError(f"record 'tasks' {record['tasks']} do not match the tasks of 'metrics' {sorted(record['metrics'])}")
    for task, settings in record["metrics"].items():
        if not isinstance(settings, dict) or not all(isinstance(v, dict) for v in settings.values()):
            raise RecordError(f"record field 'metrics.{task}' must map settings to metric mappings")
        for setting, values in settings.items():
            for key, value in values.items():
                if value is not None and not isinstance(value, (int, float, str)):
                    raise RecordError(f"metric '{task}/{setting}/{key}' has a non-scalar value")
                if isinstance(value, float) and value != value:
                    raise RecordError(f"metric '{task}/{setting}/{key}' is NaN")
    for name, identity in record["metric_families"].items():
        if not isinstance(identity, dict) or {"task", "version", "params"} - set(identity):
            raise RecordError(f"record field 'metric_families.{name}' needs task, version and params")
    json.dumps(record, allow_nan=False)  # raises on inf/NaN anywhere


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; results and caches are ordinary readable files
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def encode_samples(rows: Iterable[dict[str, Any]]) -> bytes:
    """gzip of JSON lines, with mtime 0 so the same rows always give the same bytes."""
    text = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
    return gzip.compress(text.encode(), mtime=0)


def encode_record(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Validate and atomically (re)write a record file."""
    validate_record(record)
    write_atomic(path, encode_record(record))


def write_run(run_dir: Path, record: dict[str, Any], sample_rows: list[dict[str, Any]]) -> Path:
    """Validate, then write samples and record atomically (record last: its presence means complete)."""
    samples = encode_samples(sample_rows)
    record.setdefault("artifacts", {})["samples"] = {
        "file": SAMPLES_FILE, "sha256": hashlib.sha256(samples).hexdigest(), "rows": len(sample_rows)}
    validate_record(record)
    write_atomic(run_dir / SAMPLES_FILE, samples)
    path = run_dir / RECORD_FILE
    write_atomic(path, encode_record(record))
    return path


def read_record(path: Path) -> dict[str, Any]:
    """A validated record; records of older schema versions are migrated in memory (`migrations.py`)."""
    from .migrations import migrate

    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RecordError(f"{path}:{error.lineno}: invalid JSON: {error.msg}") from None
    try:
        record = migrate(record)
        validate_record(record)
    except RecordError as error:
        raise RecordError(f"{path}: {error}") from None
    return record


def iter_records(results_dir: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted((results_dir / "runs").glob(f"*/{RECORD_FILE}")):
        yield path, read_record(path)


def read_samples(run_dir: Path) -> list[dict[str, Any]]:
    with gzip.open(run_dir / SAMPLES_FILE, "rt") as stream:
        return [json.loads(line) for line in stream]
