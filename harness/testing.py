"""Conformance kit for plugin authors: one call per component kind runs a registered component through the
harness's real stages on a tiny `synthetic` dataset and asserts its contract.

    from harness.testing import check_model, check_loss, check_metric

    def test_my_model():
        check_model("item-knn")            # installed through the crs_bench entry point

    def test_my_loss():
        check_loss("popularity-ce", {"penalty": 0.5})

Every ``check_*`` raises `ContractError` (an ``AssertionError``, so pytest reports it as a failed assertion)
with one line naming the component and the rule it breaks, and returns a `CheckResult` (the component, the
record of the real run when there is one, the rules checked). Nothing here imports pytest, and the runs
write into a temporary directory that is removed afterwards (pass ``workdir`` to keep them).

``plugins`` selects what is registered: None loads the installed plugins like ``bench`` does (entry points
included; a broken one is skipped, and a component it would provide is reported as such), a `harness.plugin_manager.Plugins` is used as is, and a list of strings is loaded as
``--plugin`` values (module paths or ``.py`` files) next to the built-ins.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

TINY_SYNTHETIC: dict[str, Any] = {"num_items": 80, "train_dialogues": 60, "valid_dialogues": 20, "test_dialogues": 20}
"""The dataset parameters of every check: a few seconds per run on a CPU."""
FAST_MODEL = ("linear-context", {"dim": 16, "vocab_buckets": 256})
"""The trainable model `check_loss` trains (small)."""
SCORING_MODEL = ("popularity", {})
"""The model whose lists `check_metric`, `check_augmenter` and `check_generator` use (instant)."""

__all__ = ["ContractError", "CheckResult", "TINY_SYNTHETIC", "check_model", "check_loss", "check_metric",
           "check_augmenter", "check_dataset", "check_retriever", "check_generator"]


class ContractError(AssertionError):
    """A component breaks its contract: one line naming the component and the rule."""


@dataclass
class CheckResult:
    """What a check verified: the component, the record of its real run (None for kinds without one) and
    the rules, in the order checked."""

    component: Any
    record: dict[str, Any] | None = None
    rules: list[str] = field(default_factory=list)


# --- plumbing ----------------------------------------------------------------------------------------

_DEFAULT_PLUGINS: Any = None


def _plugins(plugins: Any) -> Any:
    from .plugin_manager import Plugins, load_plugins

    global _DEFAULT_PLUGINS
    if isinstance(plugins, Plugins):
        return plugins
    if plugins is None:
        if _DEFAULT_PLUGINS is None:  # like `bench`: a broken installed plugin is skipped, not fatal
            _DEFAULT_PLUGINS = load_plugins(tolerate=True)
        return _DEFAULT_PLUGINS
    return load_plugins(extra=[str(p) for p in plugins])


@contextlib.contextmanager
def _workdir(workdir: str | Path | None) -> Iterator[Path]:
    if workdir is not None:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="crs-bench-check-") as temporary:
        yield Path(temporary)


class _Checker:
    """The rules of one check, each recorded; a broken rule is a ContractError naming the component."""

    def __init__(self, component: Any):
        self.component = component
        self.result = CheckResult(component)

    def fail(self, rule: str, detail: str) -> ContractError:
        return ContractError(f"{self.component.describe()} breaks '{rule}': {detail}")

    def rule(self, rule: str, holds: bool, detail: str = "") -> None:
        if not holds:
            raise self.fail(rule, detail or "it does not hold")
        self.result.rules.append(rule)

    @contextlib.contextmanager
    def running(self, rule: str) -> Iterator[None]:
        """Anything raised inside is the rule broken (harness errors are already one line)."""
        try:
            yield
        except ContractError:
            raise
        except Exception as error:  # noqa: BLE001 - the kit reports every failure as the broken rule
            from .boundary import one_line

            from .errors import RunError

            text = str(error) if isinstance(error, RunError) else one_line(error)
            raise self.fail(rule, text) from error
        self.result.rules.append(rule)


def _start(plugins: Any, kind: str, name: str, params: dict[str, Any] | None,
           validate: bool = True) -> tuple[Any, dict[str, Any], Any, "_Checker"]:
    """(plugins, params, component, checker) of one check; the params checked against the factory."""
    from .api.kinds import kind_of
    from .config import validate_params
    from .runner import lookup

    plugins = _plugins(plugins)
    params = dict(params or {})
    component = lookup(plugins, kind, name)
    check = _Checker(component)
    if validate:
        with check.running("parameters match the factory signature"):
            validate_params(kind_of(kind).singular, name, component.resolve(), params, skip=1)
    return plugins, params, component, check


def _config(flags: dict[str, Any], overrides: Sequence[str] = (), *, dataset_params: dict[str, Any] | None = None,
            **settings: Any) -> dict[str, Any]:
    from .config import resolve

    config = resolve(flags={"device": "cpu", **flags})[0]
    config["dataset"]["params"] = dict(TINY_SYNTHETIC if dataset_params is None else dataset_params)
    for dotted, value in settings.items():
        node = config
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    return config


def _execute(plugins: Any, config: dict[str, Any], root: Path, data_dir: Path | None = None) -> dict[str, Any]:
    from .runner import execute

    return execute(config, plugins, results_dir=root / "results", cache_dir=root / "cache", data_dir=data_dir,
                   quiet=True)


def _context(plugins: Any, root: Path, *, dataset: str = "synthetic", dataset_params: dict[str, Any] | None = None,
             data_dir: Path | None = None, seed: int = 0) -> Any:
    """A `RunContext` like the run's (the tiny synthetic dataset, its statistics, CPU)."""
    from .api.context import RunContext
    from .loading import load
    from .popularity import compute_statistics

    component = plugins.registries.datasets.get(dataset)
    loaded = load(component, dict(TINY_SYNTHETIC if dataset_params is None else dataset_params), data_dir,
                  root / "cache")
    train = loaded.splits["train"]
    stats = compute_statistics(loaded.num_items, train.dialogues, train.rec_samples)
    return RunContext(loaded, stats, "cpu", seed, root / "cache", {}, plugins.registries)


def _seeded(seed: int = 0) -> None:
    from .seeding import seed_everything

    seed_everything(seed)


def _finite(value: Any) -> bool:
    return value is None or isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                                       and math.isfinite(value))


def _json_ready(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


# --- models ------------------------------------------------------------------------------------------


def check_model(name: str, params: dict[str, Any] | None = None, *, plugins: Any = None, epochs: int = 1,
                workdir: str | Path | None = None) -> CheckResult:
    """A recommender: it builds from a `RunContext`, implements `Recommender` (and `TrainableRecommender`
    when ``trainable``), scores a batch as a finite-or-``-inf`` ``[B, I]`` tensor, scores the same after a
    rebuild with the same seed, trains one step (finite scalar, gradients reach its parameters), reloads its
    own ``state_dict``, and completes a real run (train, select, test, record)."""
    import torch

    from .api.conformance import check_recommender

    plugins, params, component, check = _start(plugins, "models", name, params)
    with _workdir(workdir) as root:
        ctx = _context(plugins, root)
        valid = ctx.dataset.splits["valid"]
        samples = valid.rec_samples[:8]

        def build_and_score() -> tuple[Any, Any]:
            _seeded(0)
            model = check_recommender(component.build(ctx, **params), component.describe())
            if model.trainable:
                model.eval()
            with torch.no_grad():
                return model, model.scores(model.make_batch(valid, samples))

        with check.running("builds and implements Recommender"):
            model, scores = build_and_score()
        check.rule("scores are a [B, I] float tensor", isinstance(scores, torch.Tensor) and
                   tuple(scores.shape) == (len(samples), ctx.dataset.num_items) and scores.is_floating_point(),
                   f"got {type(scores).__name__} {tuple(getattr(scores, 'shape', ()))}, expected "
                   f"({len(samples)}, {ctx.dataset.num_items})")
        check.rule("scores are finite or -inf (never NaN or +inf)",
                   not bool(torch.isnan(scores).any()) and not bool(torch.isposinf(scores).any()))
        with check.running("a rebuild with the same seed scores the same"):
            _, again = build_and_score()
        check.rule("a rebuild with the same seed scores the same", torch.equal(scores, again),
                   f"largest difference {float((scores - again).abs().max())}")
        if model.trainable:
            loss = plugins.registries.losses.get("ce").build(ctx)
            with check.running("one training step gives a finite scalar loss"):
                model.train()
                batch = model.make_batch(ctx.train, ctx.train.rec_samples[:4])
                labels = torch.tensor([s.label for s in ctx.train.rec_samples[:4]], dtype=torch.long)
                value = model.training_loss(batch, labels, loss)
                value.backward()
            check.rule("one training step gives a finite scalar loss", isinstance(value, torch.Tensor) and
                       value.dim() == 0 and math.isfinite(float(value.detach())), f"got {value!r}")
            grads = [p.grad for p in model.parameters() if p.requires_grad]
            check.rule("gradients reach its parameters", any(g is not None and bool(g.abs().sum() > 0) for g in grads)
                       and all(g is None or bool(torch.isfinite(g).all()) for g in grads),
                       "no parameter received a finite, non-zero gradient")
            with check.running("reloads its own state_dict"):
                model.load_state_dict(model.state_dict())
        with check.running("completes a real run on synthetic"):
            record = _execute(plugins, _config({"model": name, "train.epochs": epochs},
                                               metrics=["ranking"], model__params=params), root)
        values = record["metrics"]["rec"]["standard"]
        check.rule("its run reports Recall@10 in [0, 1]", 0.0 <= values["recall@10"] <= 1.0, f"{values['recall@10']}")
        check.result.record = record
    return check.result


# --- losses ------------------------------------------------------------------------------------------


def check_loss(name: str, params: dict[str, Any] | None = None, *, model: str | None = None,
               model_params: dict[str, Any] | None = None, plugins: Any = None, epochs: int = 1,
               workdir: str | Path | None = None) -> CheckResult:
    """A loss: its requirements are ones the harness knows and the model meets, it builds from a
    `RunContext`, ``loss(logits, labels)`` is a finite scalar whose gradient reaches the logits (on a batch
    of one too, unless it declares ``batch_min_2``), each optional capability it has works (state_dict,
    epoch hook, score adjustment, sample weights), and it trains `model` (the small `linear-context` by
    default) through a real run with finite epoch losses."""
    import torch

    from .api.conformance import plan_loss
    from .requirements import check_compatible

    plugins, params, component, check = _start(plugins, "losses", name, params)
    model_name, default_params = FAST_MODEL if model is None else (model, {})
    model_params = dict(default_params if model_params is None else model_params)
    with check.running(f"its requirements are met by model '{model_name}'"):
        check_compatible(component, plugins.registries.models.get(model_name), stats_available=True)
    with _workdir(workdir) as root:
        ctx = _context(plugins, root)
        items = ctx.dataset.num_items
        with check.running("builds and implements Loss"):
            _seeded(0)
            loss = component.build(ctx, **params)
            plan = plan_loss(loss, component.requires, component.describe())
        if plan.module is not None:
            with check.running("ModuleLoss: train/eval and its own state_dict"):
                plan.module.train()
                plan.module.load_state_dict(plan.module.state_dict())
        if plan.epoch_hook is not None:
            with check.running("EpochHookLoss: on_epoch_start(0) and (1)"):
                plan.epoch_hook.on_epoch_start(0)
                plan.epoch_hook.on_epoch_start(1)
        generator = torch.Generator().manual_seed(0)
        for size in ((4, 2) if plan.min_batch > 1 else (4, 2, 1)):
            labels = torch.randint(0, items, (size,), generator=generator)
            logits = torch.randn(size, items, generator=generator)
            logits[::2, :].scatter_add_(1, labels[::2, None], torch.full((len(labels[::2]), 1), 8.0))  # half ranked 1st
            logits.requires_grad_(True)
            with check.running(f"loss(logits, labels) on a batch of {size}"):
                value = loss(logits, labels)
            check.rule(f"a finite scalar on a batch of {size}", isinstance(value, torch.Tensor) and value.dim() == 0
                       and math.isfinite(float(value.detach())), f"got {type(value).__name__} of shape "
                       f"{tuple(getattr(value, 'shape', ()))}")
            with check.running(f"backward() through the loss (batch of {size})"):
                value.backward()
            check.rule(f"its gradient reaches the logits (batch of {size})", logits.grad is not None and
                       bool(torch.isfinite(logits.grad).all()) and bool(logits.grad.abs().sum() > 0),
                       "the logits' gradient is missing, zero or not finite")
        if plan.score_adjuster is not None:
            scores = torch.randn(3, items, generator=generator)
            with check.running("ScoreAdjustingLoss: adjust_scores keeps the shape"):
                adjusted = plan.score_adjuster.adjust_scores(scores)
            check.rule("ScoreAdjustingLoss: adjust_scores keeps the shape", tuple(adjusted.shape) == (3, items)
                       and not bool(torch.isnan(adjusted).any()))
        if plan.sampler is not None:
            labels = torch.tensor([s.label for s in ctx.train.rec_samples], dtype=torch.long)
            with check.running("WeightedSamplingLoss: sample_weights"):
                weights = plan.sampler.sample_weights(labels)
            check.rule("WeightedSamplingLoss: one non-negative finite weight per sample",
                       tuple(weights.shape) == (len(labels),) and bool(torch.isfinite(weights).all())
                       and bool((weights >= 0).all()) and float(weights.sum()) > 0)
        with check.running(f"trains model '{model_name}' through a real run"):
            record = _execute(plugins, _config({"model": model_name, "loss": name, "train.epochs": epochs},
                                               metrics=["ranking"], model__params=model_params,
                                               loss__params=params), root)
        history = record["training"].get("history") or []
        check.rule("finite training loss every epoch", bool(history) and all(math.isfinite(h["train_loss"])
                                                                              for h in history), f"{history}")
        check.result.record = record
    return check.result


# --- metrics -----------------------------------------------------------------------------------------


def check_metric(name: str, params: dict[str, Any] | None = None, *, plugins: Any = None,
                 workdir: str | Path | None = None) -> CheckResult:
    """A metric family: it declares a `MetricSpec`, builds with its declared parameters, implements its
    task's interface, produces only declared keys with finite values (None for undefined), every declared
    default column, counts as integers, the same values twice, and (ranking families) exactly the stored
    values again when ``bench rescore`` recomputes the run from its samples file."""
    from .api.metrics import COUNT
    from .metric_families import INTERFACE, build

    plugins, params, component, check = _start(plugins, "metrics", name, params, validate=False)
    spec = component.spec
    check.rule("declares a MetricSpec", spec is not None)
    with check.running("builds with its declared parameters"):
        family = build(plugins.registries, {"metrics": [name], "metric_params": params})[spec.task][name]
    check.rule(f"implements {INTERFACE[spec.task].__name__}", isinstance(family.instance, INTERFACE[spec.task]))

    def check_values(values: dict[str, Any], where: str) -> None:
        check.rule(f"produces only declared keys ({where})", all(spec.produces(k) for k in values),
                   f"undeclared: {sorted(k for k in values if not spec.produces(k))}")
        check.rule(f"values are finite numbers, strings or None ({where})", all(_finite(v) for v in values.values()),
                   f"{ {k: v for k, v in values.items() if not _finite(v)} }")
        check.rule(f"count keys are integers ({where})", all(isinstance(v, int) or v is None for k, v in values.items()
                                                             if spec.direction(k) == COUNT))
        missing = [c for c in spec.columns if c not in values]
        check.rule(f"produces every declared column ({where})", not missing, f"missing {missing}")

    with _workdir(workdir) as root:
        if spec.task == "conv":
            predictions = ["You might like <movie>, it is great.", "How about <movie>?", "I have not seen it."]
            references = ["You might like <movie>.", "Have you seen <movie>? It is great.", "Sounds good!"]
            outputs = None
            from .api.interfaces import ConvOutputs, OutputsMetricFamily

            if isinstance(family.instance, OutputsMetricFamily):
                outputs = ConvOutputs(predictions, references, predictions, ["User: hi"] * 3, [None] * 3, [[]] * 3)

            def compute() -> dict[str, Any]:
                if outputs is not None:
                    return family.instance.compute_outputs(outputs)
                return family.instance.compute_text(predictions, references)

            with check.running("computes on generated responses"):
                first = compute()
            check_values(first, "conv")
            check.rule("the same values twice", compute() == first)
            return check.result
        scorer, scorer_params = SCORING_MODEL
        metrics = [name] if name == "ranking" else ["ranking", name]
        with check.running("scores a real run"):
            record = _execute(plugins, _config({"model": scorer}, metrics=metrics, metric_params=params,
                                               model__params=scorer_params), root)
        for setting, values in record["metrics"]["rec"].items():
            own = {k: v for k, v in values.items() if spec.produces(k)}
            check_values(own, setting)
        from .stored_runs import open_run, recompute

        run_dir = root / "results" / "runs" / record["run_id"]
        with check.running("bench rescore recomputes the stored values"):
            stored = open_run(run_dir, plugins, None, root / "cache")
            again, _ = recompute(stored, plugins)
        for setting, values in record["metrics"]["rec"].items():
            own = {k: v for k, v in values.items() if spec.produces(k)}
            recomputed = {k: v for k, v in again["rec"][setting].items() if spec.produces(k)}
            check.rule(f"bench rescore recomputes the stored values ({setting})", own == recomputed,
                       f"stored {own} != recomputed {recomputed}")
        check.result.record = record
    return check.result


# --- augmenters --------------------------------------------------------------------------------------


def check_augmenter(name: str, params: dict[str, Any] | None = None, *, plugins: Any = None,
                    workdir: str | Path | None = None) -> CheckResult:
    """An augmenter: it builds from a `RunContext`, returns *new* dialogues marked ``synthetic`` whose
    items are catalogue indices, leaves its input unchanged, returns the same dialogues for the same seed,
    reports JSON-ready ``statistics()``, and its dialogues reach the training split of a real run (and no
    other split)."""
    from .api.conformance import check as conforms
    from .api.interfaces import Augmenter
    from .data import Dialogue

    plugins, params, component, check = _start(plugins, "augmenters", name, params)
    with _workdir(workdir) as root:
        ctx = _context(plugins, root)
        train = list(ctx.train.dialogues)
        before = copy.deepcopy(train)

        def augmented() -> tuple[Any, list[Any]]:
            _seeded(0)
            augmenter = conforms(component.build(ctx, **params), Augmenter, component.describe())
            return augmenter, augmenter.augment(list(train), random.Random(0))

        with check.running("builds, implements Augmenter and augments"):
            augmenter, added = augmented()
        check.rule("returns a list of Dialogue", isinstance(added, list) and all(isinstance(d, Dialogue) for d in added))
        check.rule("every new dialogue is marked synthetic", all(d.synthetic for d in added))
        check.rule("leaves the input dialogues unchanged", train == before)
        items = ctx.dataset.num_items
        check.rule("mentions only catalogue indices", all(0 <= i < items for d in added for t in d.turns for i in t.items))
        with check.running("the same dialogues for the same seed"):
            _, again = augmented()
        check.rule("the same dialogues for the same seed", again == added)
        with check.running("statistics() is a dict"):
            statistics = augmenter.statistics()
        check.rule("statistics() is a JSON-ready dict", isinstance(statistics, dict) and _json_ready(statistics))
        scorer, _ = SCORING_MODEL
        with check.running("completes a real run on synthetic"):
            record = _execute(plugins, _config({"model": scorer, "augmenter": name}, metrics=["ranking"],
                                               augmenter__params=params), root)
        splits = record["dataset"]["splits"]
        check.rule("its dialogues reach the training split only", splits["train"]["synthetic_dialogues"] == len(added)
                   and splits["valid"]["synthetic_dialogues"] == 0 and splits["test"]["synthetic_dialogues"] == 0,
                   f"train {splits['train']['synthetic_dialogues']} synthetic, {len(added)} added")
        check.result.record = record
    return check.result


# --- datasets ----------------------------------------------------------------------------------------


def check_dataset(name: str, params: dict[str, Any] | None = None, *, data_dir: str | Path | None = None,
                  plugins: Any = None, workdir: str | Path | None = None) -> CheckResult:
    """A dataset: it loads through the harness (cache, sample construction, `check_dataset`), has train,
    valid and test splits with samples, labels and context items inside the catalogue, and the same
    fingerprint built twice and read from the cache (a changing fingerprint would split every table)."""
    from .loading import load

    plugins, params, component, check = _start(plugins, "datasets", name, params)
    data = Path(data_dir) if data_dir is not None else None
    with _workdir(workdir) as root:
        with check.running("loads through the harness"):
            dataset = load(component, params, data, root / "cache-1")
        check.rule("has train, valid and test splits", {"train", "valid", "test"} <= set(dataset.splits))
        items = dataset.num_items
        for split_name in ("train", "valid", "test"):
            split = dataset.splits[split_name]
            check.rule(f"{split_name} has recommendation samples", bool(split.rec_samples))
            check.rule(f"{split_name} labels and context items are catalogue indices",
                       all(0 <= s.label < items and all(0 <= i < items for i in s.context_items)
                           for s in split.rec_samples))
        with check.running("the same fingerprint when built again"):
            rebuilt = load(component, params, data, root / "cache-2")
            cached = load(component, params, data, root / "cache-1")
        check.rule("the same fingerprint when built again and from the cache",
                   dataset.fingerprint == rebuilt.fingerprint == cached.fingerprint)
    return check.result


# --- retrievers --------------------------------------------------------------------------------------


def check_retriever(name: str, params: dict[str, Any] | None = None, *, plugins: Any = None, k: int = 3,
                    workdir: str | Path | None = None) -> CheckResult:
    """A retriever: it builds from a `RunContext`, indexes a corpus (the synthetic training dialogues' text),
    and ``search`` returns ``[Q, k]`` document ids inside the corpus with scores best first, never an
    excluded id, and the same answer twice."""
    import numpy as np

    from .api.conformance import check as conforms
    from .api.interfaces import Retriever

    plugins, params, component, check = _start(plugins, "retrievers", name, params)
    with _workdir(workdir) as root:
        ctx = _context(plugins, root)
        corpus = [" ".join(turn.text for turn in d.turns) for d in ctx.train.dialogues[:30]]
        queries = corpus[:5]
        with check.running("builds, implements Retriever and indexes"):
            _seeded(0)
            retriever = conforms(component.build(ctx, **params), Retriever, component.describe())
            retriever.index(corpus)
        with check.running("search(queries, k)"):
            ids, scores = (np.asarray(a) for a in retriever.search(queries, k))
        check.rule("search returns [Q, k] ids and scores", ids.shape == (len(queries), k) == scores.shape,
                   f"ids {ids.shape}, scores {scores.shape}")
        check.rule("ids are corpus positions", bool(((ids >= 0) & (ids < len(corpus))).all()))
        check.rule("scores are best first", bool((np.diff(scores, axis=1) <= 1e-9).all()))
        with check.running("search with exclude"):
            excluded, _ = (np.asarray(a) for a in retriever.search(queries, k, exclude=[[i] for i in range(len(queries))]))
        check.rule("never returns an excluded id", all(i not in excluded[i] for i in range(len(queries))))
        again, _ = (np.asarray(a) for a in retriever.search(queries, k))
        check.rule("the same answer twice", bool((again == ids).all()))
    return check.result


# --- generators --------------------------------------------------------------------------------------


def check_generator(name: str, params: dict[str, Any] | None = None, *, plugins: Any = None, conv_limit: int = 8,
                    workdir: str | Path | None = None) -> CheckResult:
    """A response generator: it builds from a `RunContext`, implements `ResponseGenerator`, ``fit`` returns
    a JSON-ready summary, ``generate`` returns one string per sample (seeing contexts only), and a real run
    with it attached scores the conversation task."""
    from .api.conformance import check as conforms
    from .api.interfaces import ResponseGenerator
    from .conversation import contexts_only

    plugins, params, component, check = _start(plugins, "generators", name, params)
    with _workdir(workdir) as root:
        ctx = _context(plugins, root)
        test = ctx.dataset.splits["test"]
        samples = test.conv_samples[:4]
        with check.running("builds and implements ResponseGenerator"):
            _seeded(0)
            generator = conforms(component.build(ctx, **params), ResponseGenerator, component.describe())
        with check.running("fit(train, valid)"):
            summary = generator.fit(ctx.train, ctx.dataset.splits["valid"])
        check.rule("fit returns a JSON-ready dict", isinstance(summary, dict) and _json_ready(summary))
        with check.running("generate(split, samples, recommendations)"):
            responses = generator.generate(*contexts_only(test, samples), None)
        check.rule("one string per sample", isinstance(responses, list) and len(responses) == len(samples)
                   and all(isinstance(r, str) for r in responses))
        scorer, _ = SCORING_MODEL
        with check.running("completes a real run with the conversation task"):
            conv = [c.name for c in plugins.registries.metrics.in_order()
                    if c.spec is not None and c.spec.task == "conv" and c.spec.default]  # opt-in ones need a judge
            record = _execute(plugins, _config({"model": scorer, "generator": name, "conv_limit": conv_limit},
                                               metrics=["ranking", *conv], generator__params=params), root)
        check.rule("its run scores the conversation task", "conv" in record["metrics"])
        check.result.record = record
    return check.result


def each(kind: str, plugins: Any = None, skip: Sequence[str] = ()) -> list[str]:
    """The names registered for `kind` (e.g. to parametrize a test over every installed loss)."""
    return [name for name in _plugins(plugins).registries.of(kind).names() if name not in skip]


CHECKS: dict[str, Callable[..., CheckResult]] = {
    "models": check_model, "losses": check_loss, "metrics": check_metric, "augmenters": check_augmenter,
    "datasets": check_dataset, "retrievers": check_retriever, "generators": check_generator,
}
