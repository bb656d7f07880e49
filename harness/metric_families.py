"""Metric families of a run: chosen from the config, built with their declared parameters, checked
against their interface, and their values merged with a check that every key is declared by exactly
the family that produced it. Nothing here knows a metric by name."""
from __future__ import annotations

import contextlib
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from .api import interfaces
from .api.conformance import check
from .api.metrics import MetricSpec
from . import config as config_module
from .config import ConfigError
from .errors import RunError
from .registry import Component, Registries

INTERFACE = {"rec": interfaces.RankingMetricFamily, "conv": interfaces.ConversationMetricFamily}
LLM_BACKENDS = "llm_backends"  # `requires=` of a metric family that builds an LLM backend (a judge)


@dataclass
class Family:
    """One built metric family with the parameters it was built with."""

    name: str
    component: Component
    params: dict[str, Any]
    instance: Any

    @property
    def spec(self) -> MetricSpec:
        assert self.component.spec is not None
        return self.component.spec

    def identity(self) -> dict[str, Any]:
        """What a leaderboard table compares: task, version and resolved parameters, plus the family's own
        `identity()` as ``details`` when it has one (an LLM judge's model and rubric)."""
        identity = {"task": self.spec.task, "version": self.component.version, "params": dict(self.params)}
        if isinstance(self.instance, interfaces.IdentifiedMetricFamily):
            identity["details"] = self.instance.identity()
        return identity


def chosen(registries: Registries, names: Iterable[str] | None, extra: Iterable[str] | None = None) -> list[Component]:
    """The configured families (``metrics: [...]``), or, when None, every registered one whose spec runs by
    default (`MetricSpec.default`); then the ``extra_metrics`` ones not already chosen, in their order. An
    opt-in family (``default=False``, e.g. an LLM judge) thus runs only when a config names it."""
    metrics = registries.metrics
    picked = [metrics.get(name) for name in names] if names is not None else \
        [component for component in metrics.in_order() if component.spec is None or component.spec.default]
    for name in extra or ():
        component = metrics.get(name)
        if all(component.name != other.name for other in picked):
            picked.append(component)
    return picked


def build(registries: Registries, config: dict[str, Any], cache_dir: Path | None = None) -> dict[str, dict[str, Family]]:
    """{task: {name: Family}} for the run's config; bad parameters are a ConfigError.

    A family registered with ``requires={"llm_backends"}`` is built as ``factory(registries=...,
    cache_dir=..., **params)``: it builds its LLM backend by name and caches its generations under
    `cache_dir` (None: no cache)."""
    components = chosen(registries, config["metrics"], config.get("extra_metrics"))
    values = config["metric_params"] or {}
    config_module.check_metric_params(values, {name for c in components for name in (c.spec.params if c.spec else {})})
    families: dict[str, dict[str, Family]] = {"rec": {}, "conv": {}}
    for component in components:
        spec = component.spec
        assert spec is not None  # the registry refuses metric families without one
        try:
            params = spec.resolve_params({k: v for k, v in values.items() if k in spec.params})
        except ValueError as error:
            raise ConfigError(f"metric_params: {error} (family '{component.name}')") from None
        from .boundary import Suspect, guard

        with guard("build", Suspect.of(component)):
            instance = component.build(registries=registries, cache_dir=cache_dir, **params) \
                if LLM_BACKENDS in component.requires else component.build(**params)
        interface = INTERFACE[spec.task]
        if spec.task == "conv" and isinstance(instance, interfaces.OutputsMetricFamily):
            interface = interfaces.OutputsMetricFamily  # scored from the outputs; compute_text is not needed
        check(instance, interface, component.describe())
        families[spec.task][component.name] = Family(component.name, component, params, instance)
    return families


def produced_keys(family: Family) -> set[str] | None:
    """The concrete keys a ranking family produces, from one call on empty lists (None if it refuses)."""
    import numpy as np

    from .ranking import LIST_LENGTH, MetricContext, RankedLists

    empty = RankedLists("standard", np.zeros((0, LIST_LENGTH), dtype=np.int64), np.zeros(0, dtype=np.int64),
                        np.zeros(0, dtype=np.int64))
    ctx = MetricContext(LIST_LENGTH, np.zeros(LIST_LENGTH, dtype=np.int64), np.array(["tail"] * LIST_LENGTH))
    try:
        return set(family.instance.compute(empty, ctx))
    except Exception:  # noqa: BLE001 - a family that needs real lists is checked by its declared patterns
        return None


def check_select_metric(select: str, families: dict[str, Family]) -> None:
    """The model-selection key must be a key some ranking family produces with its configured cut-offs."""
    for family in families.values():
        keys = produced_keys(family)
        if select in keys if keys is not None else family.spec.produces(select):
            return
    examples = [column for family in families.values() for column in family.spec.columns]
    close = difflib.get_close_matches(select, examples, n=3, cutoff=0.5)
    hint = ("did you mean " + " or ".join(f"'{c}'" for c in close) + "?") if close else \
        "declared columns: " + ", ".join(examples)
    raise ConfigError(f"train.select_metric: '{select}' is produced by no selected metric family: {hint}")


def merge_values(values: dict[str, dict[str, Any]], families: dict[str, Family], *, where: str = "metric compute",
                 resumable: bool = False) -> dict[str, Any]:
    """One flat mapping from each family's output; an undeclared or doubly produced key is an error, and so
    is a non-finite value (NaN or infinity: a family reports "undefined" as None), naming the family."""
    from .boundary import PluginFailure

    merged: dict[str, Any] = {}
    source: dict[str, str] = {}
    for name, produced in values.items():
        family = families[name]
        if not isinstance(produced, dict):
            raise PluginFailure(family.component.describe(), where, f"returned {type(produced).__name__}, not a "
                                "dict of metric values", resumable=resumable)
        for key, value in produced.items():
            if not family.spec.produces(key):
                raise RunError(f"{family.component.describe()} produced key '{key}', which its MetricSpec "
                               f"does not declare")
            if key in merged:
                raise RunError(f"metric key '{key}' is produced by both '{source[key]}' and '{name}'")
            if isinstance(value, float) and not math.isfinite(value):
                raise PluginFailure(family.component.describe(), where, f"produced {value} for '{key}' (a family "
                                    "returns None for an undefined value)" + skip_hint(family.component),
                                    resumable=resumable)
            merged[key], source[key] = value, name
    return merged


def skip_hint(component: Component) -> str:
    """How to run without an installed family that fails: every registered family runs by default."""
    origin = component.origin
    if origin is None or origin.source != "entrypoint":
        return ""
    return (f" (every registered family runs by default: leave it out with --set 'metrics=[...]' or "
            f"--disable-plugin {origin.plugin})")


@contextlib.contextmanager
def computing(family: Family, where: str, resumable: bool = False) -> Iterator[None]:
    """The error boundary around one family's computation, with the hint to leave an installed one out."""
    from .boundary import PluginFailure, Suspect, guard

    try:
        with guard(where, Suspect.of(family.component, family.instance), resumable=resumable):
            yield
    except PluginFailure as failure:
        failure.problem += skip_hint(family.component)
        raise


def rehearse(families: dict[str, Family], split: Any, ctx: Any) -> None:
    """Compute every ranking family once, before training, on placeholder lists of `split` (every context
    ranks the catalogue in index order; the novel lists skip the context's items), so that a family that
    cannot compute fails in one line before any time is spent. Values are not checked: placeholder lists
    may be degenerate."""
    import numpy as np

    from .evaluation import lists_from_tops
    from .ranking import LIST_LENGTH, context_representatives

    samples = split.rec_samples
    if not families or not samples:
        return
    contexts, _ = context_representatives(samples)
    standard = np.tile(np.arange(LIST_LENGTH, dtype=np.int64), (len(contexts), 1))
    rows = []
    for context in contexts:
        seen = set(context.context_items)
        rows.append([i for i in range(min(ctx.num_items, LIST_LENGTH + len(seen))) if i not in seen][:LIST_LENGTH])
    novel = np.array(rows, dtype=np.int64).reshape(len(contexts), LIST_LENGTH)
    lists = lists_from_tops(samples, {"standard": standard, "novel": novel})
    for setting, ranked in lists.items():
        for family in families.values():
            with computing(family, f"metric compute (pre-training check, {setting})"):
                family.instance.compute(ranked, ctx)


def identities(families: dict[str, Family]) -> dict[str, dict[str, Any]]:
    return {name: family.identity() for name, family in families.items()}
