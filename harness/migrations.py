"""Record schema migrations. Readers migrate older records in memory; ``bench migrate`` rewrites a results
directory once. Migrations change structure only, never a metric value.

Schema 1 -> 2 (the task dimension):

* ``metrics`` {setting: values} becomes {"rec": {setting: values}}; ``tasks`` lists the tasks;
* ``metric_versions`` + the top-level ``metric_params`` become ``metric_families`` {name: {task, version,
  params}}: each family with its own resolved parameters. Schema 1 had one metric parameter, longtail's
  ``pwp_beta`` (core default 0.5); conversation families listed by ``bench rescore`` in schema 1 never
  produced a value and are dropped;
* in ``config``, ``metric_params.pwp_beta`` equal to that old default is removed (it is the longtail family's
  declared default now) and ``generator: null`` added; the config hash (which now leaves empty settings out)
  and the run id are recomputed, the old ones kept under ``extra.schema_1``;
* ``stages`` records the built-in train and predict stages, the only ones schema 1 had.

Schema 2 -> 3 (component defaults in the config): a run stores every component's ``params`` with the
factory's defaults beside the given values, and its config hash covers them, so a release that changes a
default gives new runs their own id and leaderboard row. Defaults are a fact of the code that ran, and the
code of a schema-2 run is not known for sure (the committed records were probed against the code at their
git commits: several defaults had changed since), so a migrated schema-2 record keeps its config and hash
and says ``extra.defaults_filled: false``; it shares no row with runs that store their defaults.
``bench migrate --fill-defaults`` fills them from the installed plugins instead, for a caller who knows
they are the run's (config hash and run id recomputed, the old ones kept under ``extra.schema_2``).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

SCHEMA_1_CONVERSATION_FAMILIES = frozenset({"bleu_legacy", "sacrebleu", "rouge", "distinct"})
SCHEMA_1_PWP_BETA = 0.5
BUILTIN_STAGES = "harness.stages"


class MigrationError(ValueError):
    """A record that no migration can bring to the current schema."""


def migrate(record: dict[str, Any], registries: Any = None) -> dict[str, Any]:
    """`record` at the current schema version (unchanged when already current). With `registries` (the
    installed plugins, `--fill-defaults`), component defaults are filled into a schema-2 config."""
    from .results import SCHEMA_VERSION

    version = record.get("schema_version")
    if version == SCHEMA_VERSION:
        return record
    if version == 1:
        return migrate(_v1_to_v2(record), registries)
    if version == 2:
        return _v2_to_v3(record, registries)
    raise MigrationError(f"record schema_version {version!r} is unknown (this harness writes {SCHEMA_VERSION})")


def _v1_to_v2(old: dict[str, Any]) -> dict[str, Any]:
    from .config import config_hash
    from .results import run_id_for

    record = copy.deepcopy(old)
    old_params = record.pop("metric_params", None) or record["config"].get("metric_params") or {}
    versions = record.pop("metric_versions", {})
    record["metric_families"] = {
        name: {"task": "rec", "version": str(version),
               "params": {"pwp_beta": float(old_params.get("pwp_beta", SCHEMA_1_PWP_BETA))} if name == "longtail" else {}}
        for name, version in sorted(versions.items()) if name not in SCHEMA_1_CONVERSATION_FAMILIES}
    record["metrics"] = {"rec": record["metrics"]}
    record["tasks"] = ["rec"]
    record["stages"] = {"train": BUILTIN_STAGES, "predict": BUILTIN_STAGES}
    config = record["config"]
    params = dict(config.get("metric_params") or {})
    if params.get("pwp_beta") == SCHEMA_1_PWP_BETA:
        del params["pwp_beta"]
    config["metric_params"] = params
    config.setdefault("generator", None)
    record.setdefault("extra", {})["schema_1"] = {"config_hash": old["config_hash"], "run_id": old["run_id"]}
    record["config_hash"] = config_hash(config)
    record["run_id"] = run_id_for(config, record["config_hash"])
    record["schema_version"] = 2
    return record


def _v2_to_v3(old: dict[str, Any], registries: Any) -> dict[str, Any]:
    from .config import config_hash
    from .results import run_id_for

    record = copy.deepcopy(old)
    record["schema_version"] = 3
    if registries is None:
        record.setdefault("extra", {})["defaults_filled"] = False
        return record
    from .runner import resolve_defaults

    record["config"] = resolve_defaults(registries, record["config"])
    for kind, summary in record["components"].items():
        if kind in record["config"] and record["config"][kind] is not None:
            summary["params"] = record["config"][kind]["params"]
    record.setdefault("extra", {})["schema_2"] = {"config_hash": old["config_hash"], "run_id": old["run_id"]}
    record["config_hash"] = config_hash(record["config"])
    record["run_id"] = run_id_for(record["config"], record["config_hash"])
    return record


def migrate_directory(results_dir: Path, fill_defaults_from: Any = None) -> list[tuple[str, str]]:
    """Rewrite every record under ``results_dir/runs`` at the current schema and rename run directories whose
    run id changed; returns (old directory name, new directory name) for each migrated run."""
    import json

    from .results import RECORD_FILE, SCHEMA_VERSION, write_record

    moved = []
    for path in sorted((results_dir / "runs").glob(f"*/{RECORD_FILE}")):
        raw = json.loads(path.read_text())
        if raw.get("schema_version") == SCHEMA_VERSION:
            continue
        record = migrate(raw, fill_defaults_from)
        target = path.parent.with_name(record["run_id"])
        if target != path.parent and target.exists():
            raise MigrationError(f"{path.parent}: migrated run id {record['run_id']} already exists")
        write_record(path, record)
        if target != path.parent:
            path.parent.rename(target)
        moved.append((path.parent.name, target.name))
    return moved
