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
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator

SCHEMA_VERSION = 3  # 2: metrics per task, metric_families; 3: component defaults in the config; see migrations.py
RECORD_FILE = "record.json"
SAMPLES_FILE = "samples.jsonl.gz"
PENDING_SUFFIX = ".pending"

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
    split = (config["dataset"].get("params") or {}).get("resplit", 0)  # not in the hash: in the id
    parts = [config["dataset"]["name"], config["model"]["name"], config["loss"]["name"],
             config["augmenter"]["name"], *([f"split{split}"] if split else []), f"seed{config['seed']}",
             config_hash[:10]]
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


def pending_samples_name(digest: str) -> str:
    """Where a rerun stages its new samples until its record points at them (see `write_run`)."""
    return f"{SAMPLES_FILE}.{digest[:16]}{PENDING_SUFFIX}"


def write_run(run_dir: Path, record: dict[str, Any], sample_rows: list[dict[str, Any]]) -> Path:
    """Validate, then write the run as one unit: a kill at any point leaves the old complete run or the new.

    1. the new samples go to a staged name beside the old run (a kill here: the old record and samples
       are untouched; the staged file is an orphan the next run of the directory removes);
    2. the record is replaced; it names the new samples by SHA-256 (a kill here: readers find the staged
       file with that hash and move it into place, `samples_path`);
    3. the staged samples replace the old ones.
    """
    samples = encode_samples(sample_rows)
    digest = hashlib.sha256(samples).hexdigest()
    record.setdefault("artifacts", {})["samples"] = {"file": SAMPLES_FILE, "sha256": digest, "rows": len(sample_rows)}
    validate_record(record)
    staged = run_dir / pending_samples_name(digest)
    write_atomic(staged, samples)
    path = run_dir / RECORD_FILE
    write_atomic(path, encode_record(record))
    os.replace(staged, run_dir / SAMPLES_FILE)
    return path


def read_record(path: Path) -> dict[str, Any]:
    """A validated record; records of older schema versions are migrated in memory (`migrations.py`)."""
    from .migrations import migrate

    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RecordError(f"{path}:{error.lineno}: invalid JSON: {error.msg}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RecordError(f"{path}: unreadable: {error}") from None
    try:
        record = migrate(record)
        validate_record(record)
    except RecordError as error:
        raise RecordError(f"{path}: {error}") from None
    return record


def iter_records(results_dir: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted((results_dir / "runs").glob(f"*/{RECORD_FILE}")):
        yield path, read_record(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def samples_path(run_dir: Path, record: dict[str, Any]) -> Path:
    """The samples file whose SHA-256 the record stores. A run killed between its record and its samples
    (step 2 of `write_run`) is completed here; any other mismatch (a truncated or edited file) is a
    one-line error, never wrong numbers."""
    expected = record.get("artifacts", {}).get("samples", {}).get("sha256")
    path = run_dir / SAMPLES_FILE
    if expected is None:
        raise RecordError(f"{run_dir / RECORD_FILE}: field 'artifacts.samples.sha256' is missing: the samples "
                          "cannot be verified")
    if path.is_file() and _sha256(path) == expected:
        return path
    staged = run_dir / pending_samples_name(expected)
    if staged.is_file() and _sha256(staged) == expected:
        try:
            os.replace(staged, path)  # finish the interrupted write
        except OSError:
            return staged  # a read-only results directory: read the staged file where it is
        return path
    found = f"SHA-256 {_sha256(path)[:12]}" if path.is_file() else "missing"
    raise RecordError(f"{path}: {found}, but {run_dir / RECORD_FILE} field 'artifacts.samples.sha256' says "
                      f"{expected[:12]}: the file was truncated, edited or replaced; rerun the config to "
                      "rebuild the run")


def read_samples(run_dir: Path, record: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The per-sample rows of a run, verified against the record's hash (read from the directory when not
    given)."""
    record = read_record(run_dir / RECORD_FILE) if record is None else record
    path = samples_path(run_dir, record)
    rows = []
    try:
        with gzip.open(path, "rt") as stream:
            for number, line in enumerate(stream, 1):
                rows.append(json.loads(line))
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as error:
        raise RecordError(f"{path}: not a readable gzip file: {error}") from None
    except json.JSONDecodeError as error:
        raise RecordError(f"{path}:{number}: invalid JSON: {error.msg}") from None
    return rows
