"""``bench tune``: hyperparameter search on the validation split with Optuna, the test split once.

A tuning recipe is an ordinary recipe plus a ``search`` section::

    search:
      metric: recall@10          # a valid metric (default: train.select_metric); its family's direction
      trials: 20                 # per `bench tune` process (--trials overrides)
      study: lumicrs-sensitivity # optional; default: the recipe's name and base config hash
      space:
        loss.params.gamma: {low: 1.0, high: 5.0}                 # float
        train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}         # float on a log scale
        model.params.num_prototypes: {low: 10, high: 100, step: 10}  # integers (int bounds)
        augmenter: {choices: [none, template]}                   # categorical

Every trial trains its config and scores the selected weights on the valid split (`execute` with
``validate_only``: no test prediction, no record) in a private scratch directory. The study lives in an
Optuna JournalStorage file (``<cache>/studies/<study>.journal`` unless ``--storage``): processes on any
machine that shares the file join one study, so trials can be spread over Slurm or Ray workers running
``bench tune RECIPE --trials N --no-final``. The final step (``--trials 0`` evaluates a stored study)
retrains the best trial's config, tests it once and writes its record, with every trial of the study in
``record.extra.tuning``.
"""
from __future__ import annotations

import json
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import hookimpl
from .config import ConfigError, Recipe

_DIMENSION_KEYS = {"low", "high", "log", "step", "choices"}


@dataclass(frozen=True)
class Dimension:
    """One searched setting: a dotted config key with a float or integer range, or choices."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    @property
    def integer(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high)) and \
            (self.step is None or isinstance(self.step, int))

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)


@dataclass(frozen=True)
class Search:
    metric: str | None
    trials: int
    study: str | None
    space: tuple[Dimension, ...]


def parse_search(recipe: Recipe) -> Search:
    """The recipe's ``search`` section, checked completely; errors name the recipe line."""
    from .config import _check_key

    section = recipe.search
    if not isinstance(section, dict):
        raise ConfigError(f"{recipe.where('search')}: `bench tune` needs a 'search' mapping with 'space' "
                          "(docs/architecture.md, Tuning)" if section is None else
                          f"{recipe.where('search')}: 'search' must be a mapping, got {section!r}")
    unknown = set(section) - {"metric", "trials", "study", "space"}
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(f"{recipe.where(f'search.{name}')}: unknown setting 'search.{name}' "
                          "(known: metric, space, study, trials)")
    trials = section.get("trials", 10)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 0:
        raise ConfigError(f"{recipe.where('search.trials')}: search.trials must be a non-negative integer, got {trials!r}")
    space = section.get("space")
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{recipe.where('search.space')}: search.space maps dotted settings to ranges or choices")
    dimensions = []
    for key, spec in space.items():
        where = recipe.where(f"search.space.{key}")
        _check_key(str(key).split("."), recipe.path, str(key), mark=where)
        dimensions.append(_dimension(str(key), spec, where))
    metric = section.get("metric")
    if metric is not None and (not isinstance(metric, str) or not metric):
        raise ConfigError(f"{recipe.where('search.metric')}: search.metric must be a metric key, got {metric!r}")
    study = section.get("study")
    if study is not None and (not isinstance(study, str) or not study.strip() or "/" in study):
        raise ConfigError(f"{recipe.where('search.study')}: search.study must be a plain name, got {study!r}")
    return Search(metric, trials, study, tuple(dimensions))


def _dimension(key: str, spec: Any, where: str) -> Dimension:
    if not isinstance(spec, dict) or not set(spec) <= _DIMENSION_KEYS:
        raise ConfigError(f"{where}: search.space.{key} must be {{low, high[, log][, step]}} or {{choices: [...]}}, "
                          f"got {spec!r}")
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: search.space.{key}.choices must be a non-empty list (and alone)")
        return Dimension(key, choices=tuple(choices))
    low, high = spec.get("low"), spec.get("high")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
    if not numbers or low >= high:
        raise ConfigError(f"{where}: search.space.{key} needs finite numbers low < high, got low={low!r}, high={high!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool) or (log and low <= 0):
        raise ConfigError(f"{where}: search.space.{key}.log must be true or false (true needs low > 0)")
    step = spec.get("step")
    if step is not None and (not isinstance(step, (int, float)) or isinstance(step, bool) or step <= 0 or log):
        raise ConfigError(f"{where}: search.space.{key}.step must be a positive number (not with log)")
    return Dimension(key, low, high, log, step)


def storage_path(cache_dir: Path, study: str) -> Path:
    return Path(cache_dir) / "studies" / f"{study}.journal"


def open_study(path: Path, name: str, direction: str, seed: int) -> Any:
    """The study in a JournalStorage file (created, or joined when another process made it)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(path)))
    return optuna.create_study(study_name=name, storage=storage, direction=direction, load_if_exists=True,
                               sampler=optuna.samplers.TPESampler(seed=seed))


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """Every trial of the study as plain JSON, for the record."""
    return [{"number": t.number, "state": t.state.name, "params": dict(t.params), "value": t.value,
             "run_id": t.user_attrs.get("run_id")} for t in study.trials]


class TuningNote:
    """A `crs_bench_record_ready` implementation that puts the study into the best run's record."""

    def __init__(self, tuning: dict[str, Any]):
        self.tuning = tuning

    @hookimpl
    def crs_bench_record_ready(self, record: dict[str, Any]) -> None:
        record["extra"]["tuning"] = self.tuning


def direction_of(plugins: Any, metric: str) -> str:
    """'maximize' or 'minimize', from the metric family that declares the key."""
    from .api.metrics import LOWER

    for component in plugins.registries.metrics.in_order():
        if component.spec is not None and component.spec.task == "rec" and component.spec.produces(metric):
            return "minimize" if component.spec.direction(metric) == LOWER else "maximize"
    raise ConfigError(f"search.metric {metric!r} is not a key of any registered ranking metric family")


def tune(recipe: Recipe, plugins: Any, *, flags: dict[str, Any], overrides: list[str], trials: int | None,
         results_dir: Path, data_dir: Path | None, cache_dir: Path, storage: Path | None, final: bool,
         quiet: bool) -> dict[str, Any] | None:
    """Run the trials, then (with `final`) test the best trial's config once; its record, or None."""
    from . import config as config_module
    from .runner import execute, preflight

    search = parse_search(recipe)
    if recipe.grid:
        raise ConfigError(f"{recipe.where('grid')}: a tuning recipe has no grid: the search space varies the "
                          "settings (move the grid's keys into search.space)")
    declared = {name for c in plugins.registries.metrics for name in (c.spec.params if c.spec else {})}

    def configure(values: dict[str, Any]) -> dict[str, Any]:
        sets = [f"{key}={json.dumps(value)}" for key, value in values.items()]
        config = config_module.resolve(recipe, flags, [*overrides, *sets], metric_param_names=declared)[0]
        components, _ = preflight(plugins, config, cache_dir)
        return config_module.with_defaults(config, {kind: c.resolve() for kind, c in components.items()})

    base = configure({})
    metric = search.metric or base["train"]["select_metric"]
    name = search.study or f"{Path(recipe.path).stem}-{config_module.config_hash(base)[:10]}"
    path = Path(storage) if storage else storage_path(cache_dir, name)
    study = open_study(path, name, direction_of(plugins, metric), seed=base["seed"])

    def objective(trial: Any) -> float:
        config = configure({d.key: d.suggest(trial) for d in search.space})
        with tempfile.TemporaryDirectory(prefix="crs-bench-trial-") as scratch:
            summary = execute(config, plugins, results_dir=Path(scratch), data_dir=data_dir, cache_dir=cache_dir,
                              quiet=quiet, validate_only=True)
        value = summary["training"]["valid_metrics"].get(metric)
        trial.set_user_attr("run_id", summary["run_id"])
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"trial {trial.number}: valid metric {metric!r} is {value!r}")
        print(f"bench tune: trial {trial.number}: {metric}={value:.4f} {dict(trial.params)}", file=sys.stderr)
        return float(value)

    count = search.trials if trials is None else trials
    if count:
        study.optimize(objective, n_trials=count, catch=())
    if not final:
        return None
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        raise ConfigError(f"study '{name}' ({path}) has no complete trial to evaluate")
    best = study.best_trial
    tuning = {"study": name, "storage": str(path), "metric": metric, "split": "valid",
              "direction": study.direction.name.lower(), "best_trial": best.number, "best_value": best.value,
              "best_params": dict(best.params), "trials": trial_rows(study)}
    note = TuningNote(tuning)
    plugins.manager.register(note, name="bench-tune")
    try:
        return execute(configure(dict(best.params)), plugins, results_dir=results_dir, data_dir=data_dir,
                       cache_dir=cache_dir, quiet=quiet)
    finally:
        plugins.manager.unregister(note)
