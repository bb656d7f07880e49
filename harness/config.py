"""Run configuration: YAML recipe + CLI flags + ``--set key=value``, resolved into one validated config.

Precedence, lowest first: built-in defaults, the recipe file, explicit CLI flags, ``--set`` overrides.
Unknown keys are errors (with file and line for recipe keys), never silently ignored; recipes are read
with ``yaml.safe_load`` only. The resolved config is a plain dict stored verbatim in every record.
"""
from __future__ import annotations

import collections.abc
import copy
import difflib
import functools
import hashlib
import inspect
import itertools
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

COMPONENT_KINDS = ("dataset", "model", "loss", "augmenter", "generator")
OPTIONAL_COMPONENTS = ("generator",)  # None: not attached

DEFAULTS: dict[str, Any] = {
    "dataset": {"name": "synthetic", "params": {}},
    "model": {"name": "linear-context", "params": {}},
    "loss": {"name": "ce", "params": {}},
    "augmenter": {"name": "none", "params": {}},
    "generator": None,  # a response generator for the conversation task, {name, params}; None: none attached
    "metrics": None,  # None: every registered metric family that runs by default (MetricSpec.default)
    "extra_metrics": None,  # families added to those: the opt-in ones, e.g. [llm_judge]
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
    "conv_limit": None,  # conversation task: score this many test responses (a subset fixed for every system)
}

# Keys that do not change what is measured: excluded from the config hash.
NON_SEMANTIC_KEYS = ("seed", "device")

RECIPE_ONLY_KEYS = ("seeds", "grid", "description", "search")


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
    lines: dict[str, int] = field(default_factory=dict)  # key path ('grid.train.lr[2]') -> line
    search: Any = None  # `bench tune`'s search space, read by `harness.tune` (None: not a tuning recipe)

    def where(self, dotted: str) -> str:
        """'file:line' of a key path, or of its closest enclosing key, so errors point at the recipe."""
        return _where(self.path, self.lines, dotted)


def _where(path: Path | None, lines: dict[str, int], dotted: str) -> str:
    name = str(dotted)
    while name:
        if name in lines:
            return f"{path}:{lines[name]}"
        name = _parent_key(name)
    return str(path)


def _parent_key(name: str) -> str:
    """'grid.train.lr[2]' -> 'grid.train.lr' -> 'grid.train' -> 'grid' -> ''."""
    if name.endswith("]"):
        return name[:name.rindex("[")]
    return name.rpartition(".")[0]


SECTION_KEYS = ("train", "tiers", "metric_params")


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A key written twice in one mapping of a recipe."""


class _RecipeLoader(yaml.SafeLoader):
    """`yaml.safe_load` keeps the last of two equal keys silently; a recipe must not."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(
                    None, None, f"duplicate key '{key}' (first on line {seen[key]})", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep)


def _parse_recipe(path: Path) -> tuple[Any, dict[str, int]]:
    """The recipe's data and the line of every key path ('train.lr', 'grid.train.lr[2]'), from one parse."""
    loader = _RecipeLoader(path.read_text())
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        prefix = "" if isinstance(error, _DuplicateKey) else "malformed YAML: "
        raise ConfigError(f"{where}: {prefix}{problem}") from None
    finally:
        loader.dispose()
    lines: dict[str, int] = {}
    _index_lines(node, "", lines)
    return data, lines


def _index_lines(node: yaml.Node | None, prefix: str, lines: dict[str, int],
                 visited: set[int] | None = None) -> None:
    """Aliases share nodes (a recursive anchor would loop): each node is indexed once, where it is written."""
    visited = set() if visited is None else visited
    if node is None or id(node) in visited:
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        children = [(f"{prefix}.{k.value}" if prefix else str(k.value), k, v) for k, v in node.value]
    elif isinstance(node, yaml.SequenceNode):
        children = [(f"{prefix}[{i}]", item, item) for i, item in enumerate(node.value)]
    else:
        return
    for name, marked, child in children:
        lines.setdefault(name, marked.start_mark.line + 1)
        _index_lines(child, name, lines, visited)


def load_recipe(path: str | Path) -> Recipe:
    """Parse and check a recipe completely (keys, seeds, grid shape) before anything runs."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe '{path}' does not exist")
    data, lines = _parse_recipe(path)
    if data is None:
        raise ConfigError(f"{path}: recipe is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: a recipe must be a mapping of settings")
    locate = functools.partial(_where, path, lines)
    seeds = data.pop("seeds", None)
    grid = data.pop("grid", None) or {}
    description = data.pop("description", "") or ""
    search = data.pop("search", None)
    if seeds is not None:
        _check_seeds(seeds, locate)
    _check_grid_shape(grid, locate)
    if not isinstance(description, str):
        raise ConfigError(f"{locate('description')}: 'description' must be text")
    settings = _normalise(data, source=path, locate=locate)
    for key in grid:
        _check_key(key.split("."), source=path, dotted=key, mark=locate(f"grid.{key}"))
    return Recipe(path, settings, seeds, grid, description, lines, search)


def _check_seeds(seeds: Any, locate: Callable[[str], str]) -> None:
    """One run per seed: an empty list runs nothing and a repeated seed runs the same thing twice."""
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"{locate('seeds')}: seeds must be a non-empty list of integers, got {seeds!r}")
    for position, seed in enumerate(seeds):
        problem = _integer_problem(seed, minimum=0)
        if problem:
            raise ConfigError(f"{locate(f'seeds[{position}]')}: seeds[{position}] {problem}")
        if seed in seeds[:position]:
            raise ConfigError(f"{locate(f'seeds[{position}]')}: seeds[{position}] repeats seed {seed} "
                              f"(seeds must be unique)")


def _check_grid_shape(grid: Any, locate: Callable[[str], str]) -> None:
    """A grid maps dotted keys to non-empty lists of distinct values (a repeat would run twice)."""
    if not isinstance(grid, dict) or not all(isinstance(k, str) and isinstance(v, list) and v
                                             for k, v in grid.items()):
        raise ConfigError(f"{locate('grid')}: 'grid' maps dotted keys to non-empty lists")
    for key, values in grid.items():
        for position, value in enumerate(values):
            if value in values[:position]:
                raise ConfigError(f"{locate(f'grid.{key}[{position}]')}: grid.{key}[{position}] "
                                  f"repeats {value!r} (grid values must be distinct)")


def _normalise(data: dict[str, Any], source: Path | None,
               locate: Callable[[str], str] | None = None) -> dict[str, Any]:
    """Accept `model: kbrd` as shorthand for `model: {name: kbrd}`; reject unknown keys and non-mappings."""
    locate = locate or (lambda dotted: str(source) if source else "config")
    result: dict[str, Any] = {}
    for key, value in data.items():
        if key not in DEFAULTS:
            raise ConfigError(f"{locate(key)}: unknown setting '{key}' (known: {', '.join(sorted(DEFAULTS))})")
        if key in OPTIONAL_COMPONENTS and value is None:
            result[key] = None
            continue
        if key in COMPONENT_KINDS:
            value = _normalise_component(key, value, locate)
        elif key in SECTION_KEYS:
            _check_section(key, value, locate)
        result[key] = value
    return result


def _normalise_component(kind: str, value: Any, locate: Callable[[str], str]) -> dict[str, Any]:
    if isinstance(value, str):
        value = {"name": value, "params": {}}
    if not isinstance(value, dict) or set(value) - {"name", "params"} or "name" not in value:
        raise ConfigError(f"{locate(kind)}: '{kind}' must be a name or a mapping with 'name' and 'params'")
    if not isinstance(value["name"], str) or not value["name"]:
        raise ConfigError(f"{locate(kind + '.name')}: {kind}.name must be a component name, got {value['name']!r}")
    params = value.get("params")
    if params is not None and not isinstance(params, dict):
        raise ConfigError(f"{locate(kind + '.params')}: {kind}.params must be a mapping, got {params!r}")
    return {"name": value["name"], "params": dict(params or {})}


def _check_section(key: str, value: Any, locate: Callable[[str], str]) -> None:
    """`train`, `tiers` and `metric_params` are mappings; the first two have a fixed set of keys."""
    if not isinstance(value, dict):
        raise ConfigError(f"{locate(key)}: '{key}' must be a mapping of settings, got {value!r}")
    unknown = set(value) - set(DEFAULTS[key]) if key != "metric_params" else set()
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(f"{locate(f'{key}.{name}')}: unknown setting '{key}.{name}' "
                          f"(known: {', '.join(sorted(DEFAULTS[key]))})")


def _check_key(parts: list[str], source: Path | None, dotted: str, mark: str | None = None) -> None:
    where = mark or (str(source) if source else "--set")
    top = parts[0]
    if top not in DEFAULTS:
        raise ConfigError(f"{where}: unknown setting '{dotted}'")
    if top in COMPONENT_KINDS:
        if len(parts) == 1 or parts == [top, "name"]:
            return
        if parts[1] != "params" or len(parts) < 3:
            raise ConfigError(f"{where}: '{dotted}': use '{top}', '{top}.name' or '{top}.params.<key>'")
    elif top in ("train", "tiers") and (len(parts) != 2 or parts[1] not in DEFAULTS[top]):
        raise ConfigError(f"{where}: unknown setting '{dotted}' (known: "
                          f"{', '.join(top + '.' + k for k in sorted(DEFAULTS[top]))})")
    elif top == "metric_params" and len(parts) > 2:
        raise ConfigError(f"{where}: '{dotted}': use 'metric_params.<name>'")
    elif top not in SECTION_KEYS and len(parts) != 1:
        raise ConfigError(f"{where}: unknown setting '{dotted}' ('{top}' has no sub-settings)")


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
            config[parts[0]] = _normalise({parts[0]: value}, None, locate=lambda _: source)[parts[0]]
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
            overrides: list[str] | None = None, *, metric_param_names: set[str] | None = None,
            produced_keys: Callable[[dict[str, Any]], set[str]] | None = None) -> list[dict[str, Any]]:
    """Every run a recipe + flags + overrides describe (grid x seeds), each a full config dict.

    Every expanded config is validated before this returns, so a bad grid entry stops the whole recipe
    before its first run. `metric_param_names` (the metric families' declared parameters) and
    `produced_keys` (config -> metric keys its families produce) add the checks that need the registry.
    """
    base = copy.deepcopy(DEFAULTS)
    origins: dict[str, _Origin] = {}
    if recipe:
        _merge(base, recipe.settings)
        origins.update(_recipe_origins(recipe))
    for key, value in (flags or {}).items():
        if value is not None:
            flag = f"--{key.split('.')[-1]}"
            set_dotted(base, key, value, source=flag)
            _record(origins, key, _Origin(flag, key))
    for text in overrides or []:
        key, value = parse_override(text)
        set_dotted(base, key, value)
        _record(origins, key, _Origin("--set", key))
    grid = recipe.grid if recipe else {}
    seed_fixed = flags and flags.get("seed") is not None or any(o.split("=")[0].strip() == "seed" for o in overrides or [])
    seeds = [base["seed"]] if seed_fixed or not (recipe and recipe.seeds) else recipe.seeds
    runs = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
        for seed in seeds:
            config = copy.deepcopy(base)
            for key, value in zip(keys, values):
                label = f"grid.{key}[{grid[key].index(value)}]"
                set_dotted(config, key, value, source=f"{recipe.where(label)}: {label}")
            config["seed"] = seed
            entry_origins = _grid_origins(origins, recipe, keys, values) if keys else origins
            _check_types(config, entry_origins, metric_param_names)
            if produced_keys is not None:
                check_select_metric(config, produced_keys(config), _origin_of(entry_origins, "train.select_metric"))
            runs.append(config)
    return runs


def _merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key not in COMPONENT_KINDS:
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


@dataclass(frozen=True)
class _Origin:
    """Where a setting's value came from: `where` is 'file:line', '--set' or a flag (None: the default);
    `label` names the setting there ('train.lr', or 'grid.train.lr[2]' for a grid entry)."""

    where: str | None
    label: str

    def error(self, problem: str) -> ConfigError:
        return ConfigError(f"{self.where}: {self.label} {problem}" if self.where else f"{self.label} {problem}")


def _record(origins: dict[str, _Origin], dotted: str, origin: _Origin) -> None:
    """Setting a key replaces everything under it, so the origins of its old sub-keys go too."""
    for key in [k for k in origins if k.startswith(dotted + ".")]:
        del origins[key]
    origins[dotted] = origin


def _recipe_origins(recipe: Recipe) -> dict[str, _Origin]:
    origins = {}
    for top, value in recipe.settings.items():
        origins[top] = _Origin(recipe.where(top), top)
        subkeys = (value or {}).get("params", {}) if top in COMPONENT_KINDS else value if top in SECTION_KEYS else {}
        prefix = f"{top}.params" if top in COMPONENT_KINDS else top
        for sub in subkeys:
            origins[f"{prefix}.{sub}"] = _Origin(recipe.where(f"{prefix}.{sub}"), f"{prefix}.{sub}")
    return origins


def _grid_origins(origins: dict[str, _Origin], recipe: Recipe, keys: list[str], values: tuple) -> dict[str, _Origin]:
    entry = dict(origins)
    for key, value in zip(keys, values):
        label = f"grid.{key}[{recipe.grid[key].index(value)}]"
        _record(entry, key, _Origin(recipe.where(label), label))
    return entry


def _origin_of(origins: dict[str, _Origin] | None, dotted: str) -> _Origin:
    """The origin of a setting, or of the closest enclosing key that set it (`--model x` sets model.name)."""
    name = dotted
    while name:
        origin = (origins or {}).get(name)
        if origin:
            return origin if name == dotted or origin.label.startswith("grid.") else _Origin(origin.where, dotted)
        name = name.rpartition(".")[0]
    return _Origin(None, dotted)


def _is_number(value: Any) -> bool:
    """bool is an int subclass in Python, but `epochs: true` is a mistake, not 1."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer_problem(value: Any, minimum: int) -> str | None:
    if _is_number(value) and isinstance(value, int) and value >= minimum:
        return None
    kind = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
    return f"must be {kind}, got {value!r}"


def _number_problem(value: Any, low: float, high: float = math.inf, low_open: bool = False) -> str | None:
    """Finite numbers in a range; nan and inf pass no comparison a trainer relies on."""
    if _is_number(value) and math.isfinite(value) and (value > low if low_open else value >= low) and value <= high:
        return None
    if high < math.inf:
        return f"must be a number in [{low:g}, {high:g}], got {value!r}"
    return f"must be a finite {'positive' if low_open else 'non-negative'} number, got {value!r}"


_TRAIN_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "epochs": lambda v: _integer_problem(v, 0) and f"must be a positive integer or 0, got {v!r}",
    "batch_size": lambda v: _integer_problem(v, 1),
    "eval_batch_size": lambda v: _integer_problem(v, 1),
    "patience": lambda v: _integer_problem(v, 1),
    "lr": lambda v: _number_problem(v, 0.0, low_open=True),
    "weight_decay": lambda v: _number_problem(v, 0.0),
    "warmup_ratio": lambda v: _number_problem(v, 0.0, 1.0),
    "grad_clip": lambda v: _number_problem(v, 0.0),
    "precision": lambda v: None if v in ("fp32", "bf16", "fp16") else f"must be fp32, bf16 or fp16, got {v!r}",
    "select_metric": lambda v: None if isinstance(v, str) and v else f"must be a metric key, got {v!r}",
}
_FLOAT_TRAIN_KEYS = ("lr", "weight_decay", "warmup_ratio", "grad_clip")


def _check_types(config: dict[str, Any], origins: dict[str, _Origin] | None = None,
                 metric_param_names: set[str] | None = None) -> None:
    """Every setting of one expanded config; errors name where the offending value was set."""
    train = config["train"]
    for key in _FLOAT_TRAIN_KEYS:
        train[key] = _number_or_self(train[key])
    for key, check in _TRAIN_CHECKS.items():
        problem = check(train[key])
        if problem:
            raise _origin_of(origins, f"train.{key}").error(problem)
    _check_top_level(config, origins)
    _check_resplit(config, origins)
    _check_tiers(config["tiers"], origins)
    if metric_param_names is not None:
        check_metric_params(config["metric_params"], metric_param_names, origins)


def _check_top_level(config: dict[str, Any], origins: dict[str, _Origin] | None) -> None:
    for key in SECTION_KEYS:
        if not isinstance(config[key], dict):
            raise _origin_of(origins, key).error(f"must be a mapping of settings, got {config[key]!r}")
    for kind in COMPONENT_KINDS:
        if kind in OPTIONAL_COMPONENTS and config[kind] is None:
            continue
        if not isinstance(config[kind]["name"], str) or not config[kind]["name"]:
            raise _origin_of(origins, f"{kind}.name").error(f"must be a component name, got {config[kind]['name']!r}")
    problems = {
        "seed": _integer_problem(config["seed"], 0),
        "limit": config["limit"] is not None and _integer_problem(config["limit"], 1),
        "conv_limit": config["conv_limit"] is not None and _integer_problem(config["conv_limit"], 1),
        "device": not isinstance(config["device"], str) and f"must be auto, cpu or cuda[:i], got {config['device']!r}",
        "metrics": config["metrics"] is not None and _metrics_problem(config["metrics"]),
        "extra_metrics": config["extra_metrics"] is not None and _metrics_problem(config["extra_metrics"]),
    }
    for key, problem in problems.items():
        if problem:
            raise _origin_of(origins, key).error(problem)


def _check_resplit(config: dict[str, Any], origins: dict[str, _Origin] | None) -> None:
    """``dataset.params.resplit`` is a split index (`harness.resplit`); 0, the official split, is dropped so
    that official runs keep their config hash and run id."""
    params = config["dataset"]["params"]
    if "resplit" not in params:
        return
    problem = _integer_problem(params["resplit"], 0)
    if problem:
        raise _origin_of(origins, "dataset.params.resplit").error(problem + " (a split index; 0: the official split)")
    if params["resplit"] == 0:
        del params["resplit"]


def _metrics_problem(metrics: Any) -> str | None:
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        return f"must be a non-empty list of metric family names, got {metrics!r}"
    if len(set(metrics)) != len(metrics):
        return f"names a metric family twice: {metrics!r}"
    return None


_BODY_RULE = "(the body tier, tail_max < popularity < head_min, must not be empty)"


def _check_tiers(tiers: dict[str, Any], origins: dict[str, _Origin] | None) -> None:
    """The rule of `popularity.TierThresholds`: head = pop >= head_min, tail = pop <= tail_max, and the
    body between them must not be empty, so head_min > tail_max + 1."""
    for key in ("head_min", "tail_max"):
        problem = _integer_problem(tiers[key], 0)
        if problem:
            raise _origin_of(origins, f"tiers.{key}").error(problem)
    head, tail = tiers["head_min"], tiers["tail_max"]
    if head <= tail + 1:
        head_origin = _origin_of(origins, "tiers.head_min")
        if head_origin.where:
            raise head_origin.error(f"must be greater than tiers.tail_max + 1 = {tail + 1} {_BODY_RULE}, got {head}")
        raise _origin_of(origins, "tiers.tail_max").error(
            f"must be less than tiers.head_min - 1 = {head - 1} {_BODY_RULE}, got {tail}")


def check_metric_params(params: dict[str, Any], known: set[str], origins: dict[str, _Origin] | None = None) -> None:
    """Every ``metric_params`` key must be a parameter some chosen metric family declares."""
    for name in params:
        if name not in known:
            origin = _origin_of(origins, f"metric_params.{name}")
            where = f"{origin.where}: " if origin.where else ""
            raise ConfigError(f"{where}unknown setting 'metric_params.{name}'{_suggest(str(name), known)}")


def _suggest(value: str, known: set[str]) -> str:
    """' (did you mean ...?)' for close matches, else the known names (a few), so a typo fixes itself."""
    close = difflib.get_close_matches(value, sorted(known), n=3, cutoff=0.6)
    if close:
        return f" (did you mean {', '.join(repr(c) for c in close)}?)"
    shown = sorted(known)[:12]
    more = ", ..." if len(known) > len(shown) else ""
    return f" (known: {', '.join(shown) + more or 'none'})"


def check_select_metric(config: dict[str, Any], produced_keys: set[str], origin: _Origin | None = None) -> None:
    """Model selection reads `train.select_metric` from the valid metrics: it must be a key the
    configured metric families produce, or early stopping would compare nothing."""
    select = config["train"]["select_metric"]
    if select in produced_keys:
        return
    origin = origin or _Origin(None, "train.select_metric")
    raise origin.error(f"{select!r} is not a metric the selected metric families produce"
                       f"{_suggest(str(select), produced_keys)}")


def component_defaults(factory: Any, skip: int = 1) -> dict[str, Any]:
    """The factory's keyword defaults (after `skip` positional parameters) as JSON values: the settings a
    run uses without naming them, stored in its config and hashed, so a release that changes a default
    gives new runs a new id and a new leaderboard row. A default JSON cannot hold is stored by its type
    name (stable across processes, unlike its repr)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}
    defaults = {}
    for parameter in list(signature.parameters.values())[skip:]:
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY) and \
                parameter.default is not parameter.empty:
            try:
                defaults[parameter.name] = json.loads(json.dumps(parameter.default, allow_nan=False))
            except (TypeError, ValueError):
                defaults[parameter.name] = f"<default: {type(parameter.default).__name__}>"
    return defaults


def _same_json(a: Any, b: Any) -> bool:
    """Equal as stored (so True is not 1 and 1 is not 1.0)."""
    try:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    except (TypeError, ValueError):
        return False


def with_defaults(config: dict[str, Any], factories: dict[str, Any]) -> dict[str, Any]:
    """`config` with every attached component's params completed by its factory's defaults
    ({kind: factory}); given values win."""
    resolved = copy.deepcopy(config)
    for kind, factory in factories.items():
        if resolved.get(kind) is not None:
            resolved[kind]["params"] = {**component_defaults(factory), **resolved[kind]["params"]}
    return resolved


def validate_params(kind: str, name: str, factory: Any, params: dict[str, Any], skip: int) -> None:
    """Component params must be keyword parameters of the factory (after `skip` positional ones), of the
    simple type the factory annotates, so a typo or 'abc' for a float fails now, not mid-training."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    parameters = list(signature.parameters.values())[skip:]
    named = {p.name: p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        unknown = sorted(set(params) - set(named))
        if unknown:
            raise ConfigError(f"{kind} '{name}' has no parameter '{unknown[0]}' "
                              f"(accepted: {', '.join(sorted(named)) or 'none'})")
    hints = _annotations(factory, list(named.values()))
    defaults = component_defaults(factory, skip)
    for key, value in params.items():
        if key in defaults and _same_json(defaults[key], value):
            continue  # the factory's own default (a resolved config repeats it) is always accepted
        expected = hints.get(key, inspect.Parameter.empty)
        default = named[key].default if key in named else inspect.Parameter.empty
        if expected is inspect.Parameter.empty and type(default) in (bool, int, float, str):
            expected = type(default)  # no annotation: the default's type is the contract
        if expected is not inspect.Parameter.empty and not _matches(value, expected):
            raise ConfigError(f"{kind} '{name}' parameter '{key}' expects {_describe(expected)}, "
                              f"got {value!r}{_yaml_hint(value, expected)}")


_HINT_NAMES: dict[str, Any] = {
    "int": int, "float": float, "bool": bool, "str": str, "None": None, "tuple": tuple, "list": list,
    "Optional": typing.Optional, "Union": typing.Union, "Tuple": typing.Tuple, "List": typing.List,
    "Sequence": typing.Sequence, "Literal": typing.Literal, "Any": typing.Any,
}


def _annotations(factory: Any, parameters: list[inspect.Parameter]) -> dict[str, Any]:
    """Evaluated annotations (strings under `from __future__ import annotations`). get_type_hints fails
    when any annotation names something it cannot import; then each string is evaluated on its own among
    the simple names checked here, and what stays unknown is not checked."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - any failure means: fall back to one annotation at a time
        hints = {}
    result = {}
    for parameter in parameters:
        annotation = _evaluate(hints.get(parameter.name, parameter.annotation))
        if not isinstance(annotation, str):
            result[parameter.name] = annotation
    return result


def _evaluate(annotation: Any) -> Any:
    """A string annotation among the simple names only; twice, for a quoted one under the future import."""
    for _ in range(2):
        if not isinstance(annotation, str):
            break
        try:
            annotation = eval(annotation, {"__builtins__": {}}, dict(_HINT_NAMES))  # noqa: S307
        except Exception:  # noqa: BLE001 - an annotation we cannot read is not checked
            break
    return annotation


def _matches(value: Any, expected: Any) -> bool:
    """Shallow check against int, float, bool, str, None, unions, Literal, tuples and lists of those;
    anything else (classes, callables, dicts) passes: the factory knows best."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if expected is None or expected is type(None):
        return value is None
    if expected in (bool, int, float, str):
        return _matches_scalar(value, expected)
    sequence = origin or expected
    if sequence in (tuple, list, collections.abc.Sequence):
        return isinstance(value, (list, tuple)) and _matches_items(value, args)
    return True


def _matches_scalar(value: Any, expected: type) -> bool:
    """int is accepted for float; bool is accepted only for bool."""
    if expected is bool or isinstance(value, bool):
        return expected is bool and isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float))
    return isinstance(value, expected)


def _matches_items(items: list | tuple, args: tuple) -> bool:
    if not args:
        return True
    if len(args) == 2 and args[1] is Ellipsis or len(args) == 1:
        return all(_matches(item, args[0]) for item in items)
    return len(items) == len(args) and all(_matches(item, arg) for item, arg in zip(items, args))


def _describe(expected: Any) -> str:
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if expected is None or expected is type(None):
        return "None"
    if isinstance(expected, type) and not args:
        return expected.__name__
    return str(expected).replace("typing.", "")


def _yaml_hint(value: Any, expected: Any) -> str:
    """YAML 1.1 reads `1e-3` (no dot) as text; say so rather than leave the user puzzled."""
    if isinstance(value, str) and _matches(_number_or_self(value), expected) and _number_or_self(value) != value:
        return f" (YAML reads {value} as text: write it with a dot, e.g. {float(value):.1e})"
    return ""


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 of the canonical config without the seed, the device and the split index
    (``dataset.params.resplit``): the same experiment on another seed or split.

    Settings at their empty value (None or {}) are left out, so adding an optional setting to the
    defaults never renames existing runs. Credentials in URLs are redacted first, as in the record, so
    the hash can be recomputed from the stored config."""
    from .provenance import redact

    semantic = {k: v for k, v in redact(config).items() if k not in NON_SEMANTIC_KEYS and v is not None and v != {}}
    if "resplit" in (semantic.get("dataset") or {}).get("params", {}):  # a split index varies like the seed
        semantic["dataset"] = {**semantic["dataset"], "params": {
            k: v for k, v in semantic["dataset"]["params"].items() if k != "resplit"}}
    return hashlib.sha256(json.dumps(semantic, sort_keys=True, default=str).encode()).hexdigest()


def iter_recipe_files(directory: Path) -> Iterator[Path]:
    yield from sorted(directory.glob("*.yaml"))
