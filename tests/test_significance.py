"""Paired bootstrap (PROTOCOL.md §6.3): draws, p-value, identities, and the vectorized term
machinery checked against plain recomputation of each metric on every resample."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from harness.ranking import RankedLists
from harness.significance import (
    mean_term,
    paired_bootstrap,
    paired_bootstrap_text,
    resample_counts,
    resample_indices,
    summarize,
)
from plugins.metrics.conversation import Distinct, LegacyBleu, Rouge, SacreBleu
from plugins.metrics.longtail import LongTailMetrics
from plugins.metrics.recall import RankingAccuracy

REPO = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_metrics", REPO / "benchmarks" / "bench_metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small_input():
    return load_bench().make_input(4, n_samples=240, n_contexts=160, num_items=300, n_genres=5,
                                   n_people=200, n_empty=15)


def families():
    return [RankingAccuracy(), LongTailMetrics()]


def better_lists(lists: RankedLists) -> RankedLists:
    """Each context's labels moved to the front of its list: a clearly better run."""
    top = lists.top.copy()
    for row in range(lists.n_contexts):
        labels = list(dict.fromkeys(lists.labels[lists.sample_context == row].tolist()))
        rest = [item for item in top[row].tolist() if item not in labels]
        top[row] = (labels + rest)[: top.shape[1]]
    return RankedLists(lists.setting, top, lists.sample_context, lists.labels)


class Recomputed:
    """A family without bootstrap terms: the bootstrap falls back to recomputing it per resample."""

    task = "rec"

    def __init__(self, family, unit):
        self.family, self.resampling_unit = family, unit

    def compute(self, lists, ctx):
        return self.family.compute(lists, ctx)


def test_draws_follow_default_rng_and_sum_to_units():
    counts = resample_counts(7, resamples=20, seed=0)
    draws = np.random.default_rng(0).integers(0, 7, size=(20, 7))
    assert np.array_equal(resample_indices(7, 20, 0), draws)
    assert counts.shape == (20, 7) and np.all(counts.sum(axis=1) == 7)
    assert np.array_equal(counts[3], np.bincount(draws[3], minlength=7))


def test_p_value_and_interval_formula():
    result = summarize(0.5, 0.25, np.array([1.0, 2.0, 3.0, -1.0]), "samples")
    assert result["delta"] == 0.25
    assert result["p"] == 2 * 1 / 4  # min(#<=0 = 1, #>=0 = 3)
    assert result["low"] == np.percentile([1, 2, 3, -1], 2.5) and result["high"] == np.percentile([1, 2, 3, -1], 97.5)
    assert summarize(0.1, 0.0, np.array([-1.0, 0.0, 1.0]), "samples")["p"] == 1.0  # capped at 1
    undefined = summarize(float("nan"), 0.1, np.array([np.nan, np.nan]), "samples")
    assert undefined["delta"] is None and undefined["p"] is None and undefined["resamples"] == 0


def test_identical_runs_give_zero_delta_and_zero_interval(small_input):
    lists, ctx = small_input
    results = paired_bootstrap(lists, lists, ctx, families())
    assert "recall@10" in results and "coverage@50" in results and "ild@10" in results
    assert "n_tail" not in results
    for key, result in results.items():
        assert result["delta"] == 0.0, key
        assert result["low"] == 0.0 and result["high"] == 0.0, key
        assert result["p"] == 1.0 and result["significant"] is False, key


def test_clearly_better_run_has_interval_excluding_zero(small_input):
    lists, ctx = small_input
    results = paired_bootstrap(better_lists(lists), lists, ctx, families())
    for key in ("recall@1", "recall@10", "ndcg@10", "mrr@50", "pwp@10"):
        assert results[key]["low"] > 0, key
        assert results[key]["p"] < 0.05 and results[key]["significant"], key
    assert results["recall@10"]["unit"] == "samples" and results["coverage@10"]["unit"] == "contexts"


def test_observed_values_equal_compute(small_input):
    lists, ctx = small_input
    other = better_lists(lists)
    results = paired_bootstrap(lists, other, ctx, families(), resamples=10)
    for family in families():
        for side, run in (("a", lists), ("b", other)):
            for key, value in family.compute(run, ctx).items():
                if not key.startswith("n_"):
                    assert results[key][side] == pytest.approx(value, abs=1e-12), (side, key)


def test_vectorized_terms_equal_recomputation_per_resample(small_input):
    lists, ctx = small_input
    other = better_lists(lists)
    fast = paired_bootstrap(lists, other, ctx, families(), resamples=30, seed=5)
    by_samples = paired_bootstrap(lists, other, ctx, [Recomputed(RankingAccuracy(), "samples"),
                                                      Recomputed(LongTailMetrics(), "samples")], resamples=30, seed=5)
    by_contexts = paired_bootstrap(lists, other, ctx, [Recomputed(LongTailMetrics(), "contexts")], resamples=30, seed=5)
    for key, result in fast.items():
        slow = by_contexts[key] if result["unit"] == "contexts" else by_samples[key]
        for field in ("a", "b", "delta", "low", "high", "p"):
            assert result[field] == pytest.approx(slow[field], abs=1e-12), (key, field)


def test_seeds_are_averaged(small_input):
    lists, ctx = small_input
    other = better_lists(lists)
    results = paired_bootstrap([lists, other], [lists, lists], ctx, [RankingAccuracy()], resamples=50)
    expected = (RankingAccuracy().compute(lists, ctx)["recall@10"] + RankingAccuracy().compute(other, ctx)["recall@10"]) / 2
    assert results["recall@10"]["a"] == pytest.approx(expected)
    half = paired_bootstrap(other, lists, ctx, [RankingAccuracy()], resamples=50)
    assert results["recall@10"]["low"] == pytest.approx(half["recall@10"]["low"] / 2)


def test_different_samples_are_refused(small_input):
    lists, ctx = small_input
    shuffled = RankedLists(lists.setting, lists.top, lists.sample_context, lists.labels[::-1].copy())
    with pytest.raises(ValueError, match="labels differ"):
        paired_bootstrap(lists, shuffled, ctx, families())
    with pytest.raises(ValueError, match="setting"):
        paired_bootstrap(lists, RankedLists("novel", lists.top, lists.sample_context, lists.labels), ctx, families())


def test_empty_tier_stays_null():
    lists = RankedLists("standard", np.array([[0, 1, 2], [3, 4, 5]]), np.array([0, 1]), np.array([0, 3]))
    popularity = np.array([9, 9, 9, 9, 9, 9])
    from harness.ranking import MetricContext

    ctx = MetricContext(6, popularity, np.array(["head"] * 6))
    results = paired_bootstrap(lists, lists, ctx, [LongTailMetrics(recall_ks=(1,), list_ks=(2,))], resamples=20)
    assert results["tail_recall@1"]["delta"] is None and results["tail_recall@1"]["resamples"] == 0
    assert results["head_recall@1"]["delta"] == 0.0


def test_mean_term_reduces_to_the_mean():
    from harness.significance import evaluate_terms

    term = mean_term("m", "samples", np.array([1.0, 2.0, 6.0]))
    weights = np.array([[1.0, 1.0, 1.0], [3.0, 0.0, 0.0], [0.0, 1.0, 2.0]])
    assert evaluate_terms([term], {"samples": weights})["m"] == pytest.approx([3.0, 1.0, 14 / 3])


# --- conversation ----------------------------------------------------------------------------

REFERENCES = [f"i think you would like <movie> number {i} a lot" for i in range(40)]
WEAK = [f"hello there how are you {i % 3}" for i in range(40)]


class RecomputedText:
    task = "conv"

    def __init__(self, family):
        self.family = family

    def compute_text(self, predictions, references):
        return self.family.compute_text(predictions, references)


def text_families():
    return [LegacyBleu(), SacreBleu(), Rouge(), Distinct()]


def test_text_identical_runs_give_zero():
    results = paired_bootstrap_text(WEAK, WEAK, REFERENCES, text_families(), resamples=200)
    assert "sacrebleu_signature" not in results
    for key, result in results.items():
        assert result["delta"] == 0.0 and result["low"] == 0.0 and result["high"] == 0.0, key
        assert result["unit"] == "responses"


def test_text_clearly_better_run_excludes_zero():
    results = paired_bootstrap_text(REFERENCES, WEAK, REFERENCES, text_families(), resamples=200)
    for key in ("bleu2_legacy", "sacrebleu", "rouge2", "rougeL"):
        assert results[key]["low"] > 0 and results[key]["p"] < 0.05, key


def test_text_terms_equal_recomputation():
    rng = np.random.default_rng(2)
    words = np.array("a b c the movie <movie> is good you like .".split())
    predictions = [" ".join(rng.choice(words, rng.integers(0, 8))) for _ in range(40)]
    fast = paired_bootstrap_text(predictions, WEAK, REFERENCES, text_families(), resamples=25, seed=3)
    slow = paired_bootstrap_text(predictions, WEAK, REFERENCES, [RecomputedText(f) for f in text_families()],
                                 resamples=25, seed=3)
    assert set(fast) == set(slow)
    for key, result in fast.items():
        for field in ("a", "b", "delta", "low", "high", "p"):
            assert result[field] == pytest.approx(slow[key][field], abs=1e-9), (key, field)


def test_text_length_mismatch_is_refused():
    with pytest.raises(ValueError, match="39 predictions for 40 references"):
        paired_bootstrap_text(WEAK[:39], WEAK, REFERENCES, [Distinct()])
