"""Paired bootstrap between two runs of the same task (PROTOCOL.md §6.3).

Every metric is resampled over the unit it averages over: samples (Recall, NDCG, MRR, Tier-Recall,
PWP), contexts (Coverage, ILD, ARP) or responses (conversation metrics). B index vectors are drawn
once per unit with ``numpy.random.default_rng(seed)`` and shared by both runs, so the comparison is
paired.

To stay vectorized, a metric family describes each metric as a *term* built once per run:

* `SumTerm`: the metric is a function of sums of per-unit statistics (means, ratios of sums, corpus
  BLEU). All resamples are then one matrix product ``counts @ stats`` with the [B, U] matrix of how
  often each unit was drawn.
* `UnionTerm`: the metric is |union of the drawn units' sets| / denominator (Coverage, Distinct).
  The union sizes of all resamples come from one sparse product ``incidence.T @ (counts > 0).T``.

Families expose ``bootstrap_terms(lists, ctx)`` (task "rec") or ``bootstrap_terms_text(predictions,
references)`` / ``bootstrap_terms_outputs(outputs)`` (task "conv"). A family without them is still
supported by `paired_bootstrap` and `paired_bootstrap_text`: it is recomputed on each resample with
``compute``/``compute_text`` (correct, but B calls per run). `paired_bootstrap_outputs` (``bench
compare``) takes only families with terms, since an outputs family may be costly to recompute (a judge).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

import numpy as np

from .ranking import MetricContext, RankedLists
from .api.interfaces import BootstrapTerms, ConvOutputs, OutputsBootstrapTerms, ResamplingUnit, TextBootstrapTerms

if TYPE_CHECKING:
    from scipy import sparse

UNITS = ("samples", "contexts", "responses")
DEFAULT_RESAMPLES = 1000
ALPHA = 0.05
_UNION_CHUNK_CELLS = 4_000_000  # cap on the dense [vocabulary x resamples] block of a UnionTerm


@dataclass(frozen=True)
class SumTerm:
    """Metric = reduce(sums over the drawn units of per-unit statistics)."""

    key: str
    unit: str
    stats: np.ndarray  # [n_units, m]
    reduce: Callable[[np.ndarray], np.ndarray]  # [R, m] column sums -> [R] values (nan = undefined)

    def __post_init__(self) -> None:
        stats = np.asarray(self.stats, dtype=np.float64)
        if stats.ndim == 1:
            stats = stats[:, None]
        if stats.ndim != 2:
            raise ValueError(f"SumTerm '{self.key}': stats must be [n_units, m], got shape {stats.shape}")
        object.__setattr__(self, "stats", stats)


@dataclass(frozen=True)
class UnionTerm:
    """Metric = |union of the drawn units' element sets| / denominator."""

    key: str
    unit: str
    incidence: "sparse.csr_matrix"  # [n_units, n_elements], nonzero where a unit holds an element
    denominator: Union[float, np.ndarray]  # a constant, or a per-unit vector summed over the draw


Term = Union[SumTerm, UnionTerm]


def ratio_of_sums(sums: np.ndarray) -> np.ndarray:
    """Column 0 / column 1 of the summed statistics; nan where the denominator is 0."""
    numerator, denominator = sums[:, 0], sums[:, 1]
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, np.nan)


def ratio_term(key: str, unit: str, numerator: np.ndarray, denominator: np.ndarray) -> SumTerm:
    """Σ numerator / Σ denominator over the drawn units (Tier-Recall, PWP)."""
    stats = np.column_stack([np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)])
    return SumTerm(key, unit, stats, ratio_of_sums)


def mean_term(key: str, unit: str, values: np.ndarray) -> SumTerm:
    """Mean of a per-unit value over the drawn units (Recall, ILD, ARP, sentence-level BLEU)."""
    values = np.asarray(values, dtype=np.float64)
    return ratio_term(key, unit, values, np.ones_like(values))


# --- evaluation ------------------------------------------------------------------------------


def resample_counts(n_units: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """[resamples, n_units] how often each unit is drawn in each resample (U draws with replacement).

    A fresh ``default_rng(seed)`` per unit kind, so the draws of one unit kind do not depend on which
    other metrics are requested.
    """
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_units, size=(resamples, n_units)) if n_units else np.zeros((resamples, 0), np.int64)
    flat = (np.arange(resamples, dtype=np.int64)[:, None] * n_units + draws).ravel()
    return np.bincount(flat, minlength=resamples * n_units).reshape(resamples, n_units).astype(np.float64)


def resample_indices(n_units: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """The index draws behind `resample_counts` (same generator, same order)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_units, size=(resamples, n_units)) if n_units else np.zeros((resamples, 0), np.int64)


def evaluate_terms(terms: Sequence[Term], weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Value of every term under each row of the per-unit draw-count matrices ``weights[unit]``."""
    values: dict[str, np.ndarray] = {}
    by_unit: dict[str, list[SumTerm]] = {}
    for term in terms:
        if isinstance(term, SumTerm):
            by_unit.setdefault(term.unit, []).append(term)
        else:
            values[term.key] = _union_values(term, weights[term.unit])
    for unit, group in by_unit.items():
        stacked = np.concatenate([term.stats for term in group], axis=1)
        sums = weights[unit] @ stacked  # one BLAS product for every sum-type metric of this unit
        start = 0
        for term in group:
            width = term.stats.shape[1]
            values[term.key] = np.asarray(term.reduce(sums[:, start:start + width]), dtype=np.float64)
            start += width
    return values


def _union_values(term: UnionTerm, weights: np.ndarray) -> np.ndarray:
    incidence_t = term.incidence.T.tocsr()  # [elements, units]
    n_elements = max(1, incidence_t.shape[0])
    chunk = max(1, _UNION_CHUNK_CELLS // n_elements)
    sizes = np.empty(weights.shape[0], dtype=np.float64)
    for start in range(0, weights.shape[0], chunk):
        present = (weights[start:start + chunk] > 0).astype(np.float64)
        sizes[start:start + chunk] = (np.asarray(incidence_t @ present.T) > 0).sum(axis=0)
    if np.isscalar(term.denominator):
        denominator = np.full(weights.shape[0], float(term.denominator))
    else:
        denominator = weights @ np.asarray(term.denominator, dtype=np.float64)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, sizes / safe, np.nan)


def summarize(observed_a: float, observed_b: float, deltas: np.ndarray, unit: str) -> dict[str, Any]:
    """Observed Δ, 95% percentile interval and two-sided p over the finite resampled Δ_b."""
    defined = math.isfinite(observed_a) and math.isfinite(observed_b)
    finite = deltas[np.isfinite(deltas)]
    result: dict[str, Any] = {
        "unit": unit,
        "a": observed_a if math.isfinite(observed_a) else None,
        "b": observed_b if math.isfinite(observed_b) else None,
        "delta": observed_a - observed_b if defined else None,
        "low": None, "high": None, "p": None, "significant": None,
        "resamples": int(finite.size),
    }
    if defined and finite.size:
        low, high = np.percentile(finite, [2.5, 97.5])
        p = min(1.0, 2.0 * min(int((finite <= 0).sum()), int((finite >= 0).sum())) / finite.size)
        result.update(low=float(low), high=float(high), p=p, significant=p < ALPHA)
    return result


# --- recommendation runs ---------------------------------------------------------------------


def paired_bootstrap(lists_a: RankedLists | Sequence[RankedLists], lists_b: RankedLists | Sequence[RankedLists],
                     ctx: MetricContext, metrics: Sequence[Any], resamples: int = DEFAULT_RESAMPLES,
                     seed: int = 0) -> dict[str, dict[str, Any]]:
    """Paired bootstrap of every metric of `metrics` (ranking families) between runs A and B.

    A run is one `RankedLists` or a list of them (one per seed: per-resample values are averaged over
    seeds). All lists must hold the same samples in the same order, with the same contexts.
    Returns ``{key: {unit, a, b, delta, low, high, p, significant, resamples}}`` for every numeric key.
    """
    results: dict[str, dict[str, Any]] = {}
    for side_a, side_b in _rec_sides(lists_a, lists_b, ctx, metrics, resamples, seed):
        results.update(_compare(side_a, side_b))
    return results


Side = list[dict[str, tuple[str, float, np.ndarray]]]  # per run: key -> (unit, observed, [R] resampled)


def _rec_sides(lists_a: RankedLists | Sequence[RankedLists], lists_b: RankedLists | Sequence[RankedLists],
               ctx: MetricContext, metrics: Sequence[Any], resamples: int, seed: int) -> list[tuple[Side, Side]]:
    """Per family, both sides' observed and resampled values under one shared set of draws."""
    runs_a, runs_b = _as_runs(lists_a), _as_runs(lists_b)
    reference = runs_a[0]
    for position, lists in enumerate([*runs_a, *runs_b]):
        _check_same_samples(reference, lists, position)
    sizes = {"samples": reference.n_samples, "contexts": reference.n_contexts}
    weights = _Draws(sizes, resamples, seed)
    sides = []
    for family in metrics:
        if isinstance(family, BootstrapTerms):
            side_a = [_term_values(family.bootstrap_terms(lists, ctx), weights) for lists in runs_a]
            side_b = [_term_values(family.bootstrap_terms(lists, ctx), weights) for lists in runs_b]
        else:
            unit = family.resampling_unit if isinstance(family, ResamplingUnit) else "samples"
            side_a = [_recompute_rec(family, lists, ctx, unit, weights) for lists in runs_a]
            side_b = [_recompute_rec(family, lists, ctx, unit, weights) for lists in runs_b]
        sides.append((side_a, side_b))
    return sides


def paired_bootstrap_splits(splits_a: Sequence[Sequence[RankedLists]], splits_b: Sequence[Sequence[RankedLists]],
                            ctx: MetricContext | Sequence[MetricContext], metrics: Sequence[Any],
                            resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict[str, dict[str, Any]]:
    """The paired bootstrap of runs over resampled splits (`harness.resplit`): one stratum per split.

    ``splits_a[s]`` are side A's runs (seeds) on split s, on the same samples as ``splits_b[s]``; `ctx` is
    one context for all splits or one per split (each split's tiers come from its own training split).
    Units are drawn within each split (split s with seed ``seed + s``, shared by both sides), each split's
    values are averaged over its seeds and the splits are averaged: the statistic the leaderboard reports,
    with a test sample never drawn into another split's resample."""
    if len(splits_a) != len(splits_b) or not splits_a:
        raise ValueError(f"both sides need the same splits, got {len(splits_a)} and {len(splits_b)}")
    contexts = [ctx] * len(splits_a) if isinstance(ctx, MetricContext) else list(ctx)
    strata_a: Side = []
    strata_b: Side = []
    for offset, (runs_a, runs_b) in enumerate(zip(splits_a, splits_b)):
        merged_a: dict[str, tuple[str, float, np.ndarray]] = {}
        merged_b: dict[str, tuple[str, float, np.ndarray]] = {}
        for side_a, side_b in _rec_sides(list(runs_a), list(runs_b), contexts[offset], metrics, resamples,
                                         seed + offset):
            merged_a.update(_seed_mean(side_a))
            merged_b.update(_seed_mean(side_b))
        strata_a.append(merged_a)
        strata_b.append(merged_b)
    return _compare(strata_a, strata_b)


def _seed_mean(side: Side) -> dict[str, tuple[str, float, np.ndarray]]:
    """One split's values averaged over its seeds, as `_compare` averages them."""
    return {key: (unit, float(np.mean([run[key][1] for run in side])),
                  np.mean([run[key][2] for run in side], axis=0)) for key, (unit, _, _) in side[0].items()}


def _as_runs(lists: RankedLists | Sequence[RankedLists]) -> list[RankedLists]:
    runs = [lists] if isinstance(lists, RankedLists) else list(lists)
    if not runs:
        raise ValueError("a run needs at least one RankedLists (one per seed)")
    return runs


def _check_same_samples(reference: RankedLists, other: RankedLists, position: int) -> None:
    """Paired resampling is only meaningful on the same samples in the same order (same task)."""
    problems = []
    if reference.setting != other.setting:
        problems.append(f"setting {other.setting!r} != {reference.setting!r}")
    if not np.array_equal(reference.labels, other.labels):
        problems.append("labels differ (different samples or order)")
    if not np.array_equal(reference.sample_context, other.sample_context):
        problems.append("sample-to-context rows differ")
    if reference.n_contexts != other.n_contexts:
        problems.append(f"{other.n_contexts} contexts != {reference.n_contexts}")
    if reference.sample_ids and other.sample_ids and list(reference.sample_ids) != list(other.sample_ids):
        problems.append("sample ids differ")
    if problems:
        raise ValueError(f"paired bootstrap needs identical sample sets: run #{position} vs run #0: " + "; ".join(problems))


class _Draws:
    """Lazily drawn count matrices per unit, plus the all-ones 'observed' row."""

    def __init__(self, sizes: dict[str, int], resamples: int, seed: int):
        if resamples < 1:
            raise ValueError(f"resamples must be >= 1, got {resamples}")
        self.sizes, self.resamples, self.seed = sizes, resamples, seed
        self._counts: dict[str, np.ndarray] = {}
        self._indices: dict[str, np.ndarray] = {}

    def counts(self) -> dict[str, np.ndarray]:
        for unit, size in self.sizes.items():
            if unit not in self._counts:
                self._counts[unit] = resample_counts(size, self.resamples, self.seed)
        return self._counts

    def indices(self, unit: str) -> np.ndarray:
        if unit not in self._indices:
            self._indices[unit] = resample_indices(self.sizes[unit], self.resamples, self.seed)
        return self._indices[unit]

    def observed(self) -> dict[str, np.ndarray]:
        return {unit: np.ones((1, size)) for unit, size in self.sizes.items()}


def _term_values(terms: Sequence[Term], draws: _Draws) -> dict[str, tuple[str, float, np.ndarray]]:
    """key -> (unit, observed value, [R] resampled values)."""
    for term in terms:
        if term.unit not in draws.sizes:
            raise ValueError(f"metric '{term.key}' resamples over unknown unit {term.unit!r}")
    observed = evaluate_terms(terms, draws.observed())
    resampled = evaluate_terms(terms, draws.counts())
    return {term.key: (term.unit, float(observed[term.key][0]), resampled[term.key]) for term in terms}


def _numeric(values: dict[str, Any]) -> dict[str, float]:
    """Metric values as floats (None -> nan); counts (``n_*``) and strings are not compared."""
    out = {}
    for key, value in values.items():
        if key.startswith("n_") or isinstance(value, (str, bool)):
            continue
        if value is None or isinstance(value, (int, float, np.integer, np.floating)):
            out[key] = math.nan if value is None else float(value)
    return out


def _recompute_rec(family: Any, lists: RankedLists, ctx: MetricContext, unit: str,
                   draws: _Draws) -> dict[str, tuple[str, float, np.ndarray]]:
    """Fallback for families without terms: B calls of ``compute`` on resampled lists."""
    if unit not in ("samples", "contexts"):
        raise ValueError(f"{type(family).__name__}: unknown resampling unit {unit!r}")
    observed = _numeric(family.compute(lists, ctx))
    resampled = {key: np.empty(draws.resamples) for key in observed}
    for row, index in enumerate(draws.indices(unit)):
        values = _numeric(family.compute(_resample_lists(lists, unit, index), ctx))
        for key in observed:
            resampled[key][row] = values.get(key, math.nan)
    return {key: (unit, observed[key], resampled[key]) for key in observed}


def _resample_lists(lists: RankedLists, unit: str, index: np.ndarray) -> RankedLists:
    """The lists restricted to a multiset of samples, or of contexts with all their samples."""
    if unit == "samples":
        return RankedLists(lists.setting, lists.top, lists.sample_context[index], lists.labels[index])
    order = np.argsort(lists.sample_context, kind="stable")
    per_context = np.bincount(lists.sample_context, minlength=lists.n_contexts)
    starts = np.concatenate([[0], np.cumsum(per_context)[:-1]])
    lengths = per_context[index]
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    chosen = order[np.repeat(starts[index], lengths) + offsets]
    return RankedLists(lists.setting, lists.top[index], np.repeat(np.arange(index.size), lengths), lists.labels[chosen])


def _compare(side_a: list[dict[str, tuple[str, float, np.ndarray]]],
             side_b: list[dict[str, tuple[str, float, np.ndarray]]]) -> dict[str, dict[str, Any]]:
    """Average each side over seeds, then summarize A - B per key."""
    results = {}
    for key, (unit, _, _) in side_a[0].items():
        if any(key not in seed_values for seed_values in [*side_a, *side_b]):
            raise ValueError(f"metric '{key}' is missing from some seeds")
        observed_a = float(np.mean([seed_values[key][1] for seed_values in side_a]))
        observed_b = float(np.mean([seed_values[key][1] for seed_values in side_b]))
        resampled_a = np.mean([seed_values[key][2] for seed_values in side_a], axis=0)
        resampled_b = np.mean([seed_values[key][2] for seed_values in side_b], axis=0)
        results[key] = summarize(observed_a, observed_b, resampled_a - resampled_b, unit)
    return results


# --- conversation runs -----------------------------------------------------------------------


def paired_bootstrap_text(predictions_a: Sequence[str] | Sequence[Sequence[str]],
                          predictions_b: Sequence[str] | Sequence[Sequence[str]], references: Sequence[str],
                          metrics: Sequence[Any], resamples: int = DEFAULT_RESAMPLES,
                          seed: int = 0) -> dict[str, dict[str, Any]]:
    """Paired bootstrap of conversation metrics over responses (clean strings, PROTOCOL.md §5.1).

    A run is a list of predictions, or a list of such lists (one per seed), aligned with `references`.
    """
    runs_a, runs_b = _as_text_runs(predictions_a), _as_text_runs(predictions_b)
    for position, predictions in enumerate([*runs_a, *runs_b]):
        if len(predictions) != len(references):
            raise ValueError(f"paired bootstrap: run #{position} has {len(predictions)} predictions "
                             f"for {len(references)} references")
    draws = _Draws({"responses": len(references)}, resamples, seed)
    results: dict[str, dict[str, Any]] = {}
    for family in metrics:
        if isinstance(family, TextBootstrapTerms):
            side_a = [_term_values(family.bootstrap_terms_text(p, references), draws) for p in runs_a]
            side_b = [_term_values(family.bootstrap_terms_text(p, references), draws) for p in runs_b]
        else:
            side_a = [_recompute_text(family, p, references, draws) for p in runs_a]
            side_b = [_recompute_text(family, p, references, draws) for p in runs_b]
        results.update(_compare(side_a, side_b))
    return results


def _as_text_runs(predictions: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    predictions = list(predictions)
    if predictions and not isinstance(predictions[0], str):
        return [list(seed_predictions) for seed_predictions in predictions]
    return [predictions]


def _recompute_text(family: Any, predictions: list[str], references: Sequence[str],
                    draws: _Draws) -> dict[str, tuple[str, float, np.ndarray]]:
    observed = _numeric(family.compute_text(predictions, list(references)))
    resampled = {key: np.empty(draws.resamples) for key in observed}
    for row, index in enumerate(draws.indices("responses")):
        values = _numeric(family.compute_text([predictions[i] for i in index], [references[i] for i in index]))
        for key in observed:
            resampled[key][row] = values.get(key, math.nan)
    return {key: ("responses", observed[key], resampled[key]) for key in observed}


def paired_bootstrap_outputs(outputs_a: ConvOutputs | Sequence[ConvOutputs], outputs_b: ConvOutputs | Sequence[ConvOutputs],
                             metrics: Sequence[Any], resamples: int = DEFAULT_RESAMPLES,
                             seed: int = 0) -> dict[str, dict[str, Any]]:
    """Paired bootstrap of conversation families over responses, from whole `ConvOutputs`.

    A run is one `ConvOutputs` or a list of them (one per seed), all aligned: the same responses' contexts
    in the same order. Families with `OutputsBootstrapTerms` get the outputs, those with
    `TextBootstrapTerms` the predictions and references; a family with neither is left out (no key of
    its is returned). Same draws as `paired_bootstrap_text`: ``default_rng(seed)`` over the responses.
    """
    runs_a = [outputs_a] if isinstance(outputs_a, ConvOutputs) else list(outputs_a)
    runs_b = [outputs_b] if isinstance(outputs_b, ConvOutputs) else list(outputs_b)
    if not runs_a or not runs_b:
        raise ValueError("a run needs at least one ConvOutputs (one per seed)")
    size = len(runs_a[0].references)
    for position, outputs in enumerate([*runs_a, *runs_b]):
        if len(outputs.references) != size or len(outputs.predictions) != size:
            raise ValueError(f"paired bootstrap: run #{position} has {len(outputs.predictions)} responses for "
                             f"{len(outputs.references)} references; run #0 has {size}")
    draws = _Draws({"responses": size}, resamples, seed)
    results: dict[str, dict[str, Any]] = {}
    for family in metrics:
        if isinstance(family, OutputsBootstrapTerms):
            def terms(outputs: ConvOutputs, family: Any = family) -> list[Any]:
                return family.bootstrap_terms_outputs(outputs)
        elif isinstance(family, TextBootstrapTerms):
            def terms(outputs: ConvOutputs, family: Any = family) -> list[Any]:
                return family.bootstrap_terms_text(list(outputs.predictions), list(outputs.references))
        else:
            continue
        side_a = [_term_values(terms(outputs), draws) for outputs in runs_a]
        side_b = [_term_values(terms(outputs), draws) for outputs in runs_b]
        results.update(_compare(side_a, side_b))
    return results
