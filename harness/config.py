"""Run configuration: YAML recipe + CLI flags + ``--set key=value``, resolved into one validated config.

Precedence, lowest first: built-in defaults, the recipe file, explicit CLI flags, ``--set`` overrides.
Unknown keys are errors (with file and line for recipe keys), never silently ignored; recipes are read
with ``yaml.safe_load`` only. The resolved config is a plain dict stored verbatim in every record.
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

COMPONENT_KINDS = ("dataset", "model", "loss", "augmenter", "generator")
OPTIONAL_COMPONENTS = ("generator",)  # None: not attached

DEFAULTS: dict[str, Any] = {
    "dataset": {"name": "synthetic", "params": {}},
    "model": {"name": "linear-context", "params": {}},
    "loss": {"name": "ce", "params": {}},
    "augmenter": {"name": "none", "params": {}},
    "generator": None,  # a response generator for the conversation task, {name, params}; None: none attached
    "metrics": None,  # None: every registered metric family
    "metric_params": {},  # parameters the chosen metric families declare (e.g. longtail's pwp_beta)
    "tiers": {"head_min": 6, "tail_max": 1},
    "train": {
        "epochs": 20,
        "batch_size": 64,
        "eval_batch_size": 256,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "warmup_ratio": 0.0,
        "grad_clip": 1.0,
        "patience": 3,
        "select_metric": "recall@10",
        "precision": "fp32",  # fp32 everywhere; bf16 autocast only on CUDA
    },
    "seed": 0,
    "device": "auto",
    "limit": None,  # cap on samples per split, for smoke runs
}

# Keys that do not change what is measured: excluded from the config hash.
NON_SEMANTIC_KEYS = ("seed", "device")

RECIPE_ONLY_KEYS = ("seeds", "grid", "description")


class ConfigError(ValueError):
    """Invalid configuration; the message names the file and line when the key came from a recipe."""


@dataclass
class Recipe:
    """A parsed YAML recipe: the base settings plus the seed list and the grid to expand."""

    path: Path | None
    settings: dict[str, Any]
    seeds: list[int] | None
    grid: dict[str, list[Any]]
    description: str = ""


def _mark(path: Path, dotted: str) -> str:
    """'file:line' of a dotted key in a YAML file, found by composing the node tree."""
    try:
        node = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return str(path)
    line = None
    for part in dotted.split("."):
        if not isinstance(node, yaml.MappingNode):
            break
        for key_node, value_node in node.value:
            if key_node.value == part:
                line, node = key_node.start_mark.line + 1, value_node
                break
        else:
            break
    return f"{path}:{line}" if line else str(path)


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{where}: malformed YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: a recipe must be a mapping of settings")
    seeds = data.pop("seeds", None)
    grid = data.pop("grid", None) or {}
    description = data.pop("description", "") or ""
    if seeds is not None and (not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds)):
        raise ConfigError(f"{_mark(path, 'seeds')}: 'seeds' must be a list of integers")
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"{_mark(path, 'grid')}: 'grid' maps dotted keys to non-empty lists")
    settings = _normalise(data, source=path)
    for key in grid:
        _check_key(key.split("."), source=path, dotted=key, mark=_mark(path, f"grid.{key}"))
    return Recipe(path, settings, seeds, grid, description)


def _normalise(data: dict[str, Any], source: Path | None) -> dict[str, Any]:
    """Accept `model: kbrd` as shorthand for `model: {name: kbrd}`; reject unknown keys."""
    result: dict[str, Any] = {}
    for key, value in data.items():
        where = _mark(source, key) if source else "config"
        if key not in DEFAULTS:
            raise ConfigError(f"{where}: unknown setting '{key}' (known: {', '.join(sorted(DEFAULTS))})")
        if key in OPTIONAL_COMPONENTS and value is None:
            result[key] = None
            continue
        if key in COMPONENT_KINDS:
            if isinstance(value, str):
                value = {"name": value, "params": {}}
            if not isinstance(value, dict) or set(value) - {"name", "params"} or "name" not in value:
                raise ConfigError(f"{where}: '{key}' must be a name or a mapping with 'name' and 'params'")
            value = {"name": value["name"], "params": dict(value.get("params") or {})}
        elif key in ("train", "tiers", "metric_params") and isinstance(value, dict):
            unknown = set(value) - set(DEFAULTS[key]) if key != "metric_params" else set()
            if unknown:
                name = sorted(unknown)[0]
                where = _mark(source, f"{key}.{name}") if source else "config"
                raise ConfigError(f"{where}: unknown setting '{key}.{name}' "
                                  f"(known: {', '.join(sorted(DEFAULTS[key]))})")
        result[key] = value
    return result


def _check_key(parts: list[str], source: Path | None, dotted: str, mark: str | None = None) -> None:
    where = mark or (str(source) if source else "--set")
    top = parts[0]
    if top not in DEFAULTS:
        raise ConfigError(f"{where}: unknown setting '{dotted}'")
    if top in COMPONENT_KINDS:
        if len(parts) == 1 or parts[1] == "name":
            return
        if parts[1] != "params" or len(parts) < 3:
            raise ConfigError(f"{where}: '{dotted}': use '{top}', '{top}.name' or '{top}.params.<key>'")
    elif top in ("train", "tiers") and (len(parts) != 2 or parts[1] not in DEFAULTS[top]):
        raise ConfigError(f"{where}: unknown setting '{dotted}' (known: "
                          f"{', '.join(top + '.' + k for k in sorted(DEFAULTS[top]))})")


def set_dotted(config: dict[str, Any], dotted: str, value: Any, source: str = "--set") -> None:
    parts = dotted.split(".")
    _check_key(parts, None, dotted, mark=source)
    if parts[0] in OPTIONAL_COMPONENTS and len(parts) == 1 and value in (None, "none", "null", ""):
        config[parts[0]] = None
        return
    if parts[0] in OPTIONAL_COMPONENTS and len(parts) > 1 and config.get(parts[0]) is None:
        raise ConfigError(f"{source}: '{dotted}': choose a {parts[0]} first ('{parts[0]}=NAME')")
    if parts[0] in COMPONENT_KINDS and len(parts) == 1:
        if isinstance(value, dict):
            config[parts[0]] = _normalise({parts[0]: value}, None)[parts[0]]
        else:
            config[parts[0]] = {"name": str(value), "params": {}}
        return
    node = config
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value parsed as YAML (so numbers, booleans and lists work)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got '{text}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), _number_or_self(value)


def _number_or_self(value: Any) -> Any:
    """YAML 1.1 reads `3e-4` as a string; researchers mean a float."""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in ".e") else int(value)
        except ValueError:
            return value
    return value


def resolve(recipe: Recipe | None = None, flags: dict[str, Any] | None = None,
            overrides: list[str] | None = None) -> list[dict[str, Any]]:
    """Every run a recipe + flags + overrides describe (grid x seeds), each a full config dict."""
    base = copy.deepcopy(DEFAULTS)
    if recipe:
        _merge(base, recipe.settings)
    for key, value in (flags or {}).items():
        if value is not None:
            set_dotted(base, key, value, source=f"--{key.split('.')[0]}")
    for text in overrides or []:
        key, value = parse_override(text)
        set_dotted(base, key, value)
    grid = recipe.grid if recipe else {}
    seed_fixed = flags and flags.get("seed") is not None or any(o.split("=")[0].strip() == "seed" for o in overrides or [])
    seeds = [base["seed"]] if seed_fixed or not (recipe and recipe.seeds) else recipe.seeds
    runs = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
        for seed in seeds:
            config = copy.deepcopy(base)
            for key, value in zip(keys, values):
                set_dotted(config, key, value, source=f"grid.{key}")
            config["seed"] = seed
            _check_types(config)
            runs.append(config)
    return runs


def _merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key not in COMPONENT_KINDS:
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _check_types(config: dict[str, Any]) -> None:
    train = config["train"]
    for key in ("epochs", "batch_size", "eval_batch_size", "patience"):
        if not isinstance(train[key], int) or train[key] < (0 if key == "epochs" else 1):
            raise ConfigError(f"train.{key} must be a positive integer, got {train[key]!r}")
    for key in ("lr", "weight_decay", "warmup_ratio", "grad_clip"):
        train[key] = _number_or_self(train[key])
        if not isinstance(train[key], (int, float)) or train[key] < 0:
            raise ConfigError(f"train.{key} must be a non-negative number, got {train[key]!r}")
    if train["precision"] not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"train.precision must be fp32, bf16 or fp16, got {train['precision']!r}")
    if not isinstance(config["seed"], int):
        raise ConfigError(f"seed must be an integer, got {config['seed']!r}")
    if config["limit"] is not None and (not isinstance(config["limit"], int) or config["limit"] < 1):
        raise ConfigError(f"limit must be a positive integer, got {config['limit']!r}")
    if not isinstance(config["metric_params"], dict):
        raise ConfigError(f"metric_params must be a mapping of metric parameters, got {config['metric_params']!r}")
    if config["metrics"] is not None and not isinstance(config["metrics"], list):
        raise ConfigError("metrics must be a list of metric family names")


def validate_params(kind: str, name: str, factory: Any, params: dict[str, Any], skip: int) -> None:
    """Component params must be keyword parameters of the factory (after `skip` positional ones)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    parameters = list(signature.parameters.values())[skip:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    allowed = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ConfigError(f"{kind} '{name}' has no parameter '{unknown[0]}' "
                          f"(accepted: {', '.join(sorted(allowed)) or 'none'})")


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 of the canonical config without the seed and the device (same experiment, other seed).

    Settings at their empty value (None or {}) are left out, so adding an optional setting to the
    defaults never renames existing runs."""
    semantic = {k: v for k, v in config.items() if k not in NON_SEMANTIC_KEYS and v is not None and v != {}}
    return hashlib.sha256(json.dumps(semantic, sort_keys=True, default=str).encode()).hexdigest()


def iter_recipe_files(directory: Path) -> Iterator[Path]:
    yield from sorted(directory.glob("*.yaml"))
