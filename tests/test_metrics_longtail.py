"""Tier-Recall, PWP, Coverage, ILD and ARP (PROTOCOL.md §4): hand-computed fixture, the §4.8
required unit tests, and the loop reference of benchmarks/bench_metrics.py as an oracle."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from harness.ranking import MetricContext, RankedLists
from harness.registry import Registry
from plugins.metrics import longtail
from plugins.metrics.longtail import LongTailMetrics, empty_feature_count, neighbour_features, popularity_percentiles
from plugins.metrics.recall import RankingAccuracy

REPO = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_metrics", REPO / "benchmarks" / "bench_metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiers_of(popularity, head_min=6, tail_max=1):
    return np.where(popularity >= head_min, "head", np.where(popularity <= tail_max, "tail", "body"))


# Ten items; tiers under h = 6, τ = 1: head {0, 1, 2, 9}, body {3, 4}, tail {5, 6, 7, 8}, cold {6, 7}.
POPULARITY = np.array([10, 8, 6, 3, 2, 1, 0, 0, 1, 7])
NEIGHBOURS = [{100, 101}, {100, 102}, {105}, {100, 101, 102, 104}, set(), set(), {101}, set(), {106}, {103}]


def fixture(neighbours=NEIGHBOURS):
    ctx = MetricContext(10, POPULARITY, tiers_of(POPULARITY), neighbours)
    top = np.array([[0, 1, 9], [3, 5, 6]])
    # samples: label 1 (head, rank 2), 4 (body, absent), 6 (cold, rank 3), 7 (cold, absent), 3 (body, rank 1)
    lists = RankedLists("standard", top, np.array([0, 0, 1, 1, 1]), np.array([1, 4, 6, 7, 3]))
    return lists, ctx


def small_family(**kwargs):
    return LongTailMetrics(recall_ks=(1, 3), list_ks=(2, 3), **kwargs)


def test_tier_recall_hand_computed():
    values = small_family().compute(*fixture())
    assert (values["n_head"], values["n_body"], values["n_tail"], values["n_cold"]) == (1, 2, 2, 2)
    assert values["head_recall@1"] == 0.0 and values["head_recall@3"] == 1.0
    assert values["body_recall@1"] == pytest.approx(1 / 2) and values["body_recall@3"] == pytest.approx(1 / 2)
    assert values["tail_recall@1"] == 0.0 and values["tail_recall@3"] == pytest.approx(1 / 2)
    assert values["cold_recall@1"] == 0.0 and values["cold_recall@3"] == pytest.approx(1 / 2)


def test_pwp_hand_computed():
    values = small_family().compute(*fixture())
    weights = {1: 9 ** -0.5, 4: 3 ** -0.5, 6: 1.0, 7: 1.0, 3: 4 ** -0.5}  # (pop + 1)^(-1/2)
    total = sum(weights.values())
    assert values["pwp@2"] == pytest.approx((weights[1] + weights[3]) / total)
    assert values["pwp@3"] == pytest.approx((weights[1] + weights[3] + weights[6]) / total)


def test_coverage_arp_ild_hand_computed():
    values = small_family().compute(*fixture())
    assert values["coverage@2"] == pytest.approx(4 / 10)  # {0, 1} ∪ {3, 5}
    assert values["coverage@3"] == pytest.approx(6 / 10)
    # mid-rank percentiles: pop 10 -> .95, 8 -> .85, 7 -> .75, 3 -> .55, 1 -> .30, 0 -> .10
    assert values["arp@2"] == pytest.approx(((0.95 + 0.85) / 2 + (0.55 + 0.30) / 2) / 2)
    assert values["arp@3"] == pytest.approx(((0.95 + 0.85 + 0.75) / 3 + (0.55 + 0.30 + 0.10) / 3) / 2)
    # d(0,1) = 1 - 1/2, d(0,9) = d(1,9) = 1; d(3,5) = 1 (empty), d(3,6) = 1 - 1/2, d(5,6) = 1
    assert values["ild@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert values["ild@3"] == pytest.approx((2.5 / 3 + 2.5 / 3) / 2)


def test_percentiles_are_mid_ranks():
    expected = [0.95, 0.85, 0.65, 0.55, 0.45, 0.30, 0.10, 0.10, 0.30, 0.75]
    assert popularity_percentiles(POPULARITY) == pytest.approx(expected)


def test_empty_tier_is_null_with_zero_count():
    lists, ctx = fixture()
    no_head = RankedLists("novel", lists.top, lists.sample_context[1:], lists.labels[1:])  # drop the head label
    values = small_family().compute(no_head, ctx)
    assert values["n_head"] == 0
    assert values["head_recall@1"] is None and values["head_recall@3"] is None
    assert values["n_body"] == 2 and values["body_recall@1"] == pytest.approx(1 / 2)


def test_empty_sample_set_is_all_null():
    lists = RankedLists("novel", np.zeros((0, 3), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    values = small_family().compute(lists, fixture()[1])
    assert all(values[f"n_{tier}"] == 0 for tier in ("head", "body", "tail", "cold"))
    assert all(value is None for key, value in values.items() if not key.startswith("n_"))


def test_popularity_ranker_coverage_is_k_over_catalogue_and_tail_recall_zero():
    rng = np.random.default_rng(3)
    num_items = 120
    popularity = rng.integers(0, 30, num_items)
    popularity[:70] += 10  # >= 70 items above the tail: the top 50 holds no tail item
    ranking = np.argsort(-popularity, kind="stable")[:50]
    top = np.tile(ranking, (40, 1))
    labels = rng.integers(0, num_items, 60)
    lists = RankedLists("standard", top, rng.integers(0, 40, 60), labels)
    ctx = MetricContext(num_items, popularity, tiers_of(popularity), None)
    values = LongTailMetrics().compute(lists, ctx)
    assert values["coverage@10"] == 10 / num_items
    assert values["coverage@50"] == 50 / num_items
    assert values["n_tail"] > 0
    assert values["tail_recall@1"] == values["tail_recall@10"] == values["tail_recall@50"] == 0.0
    assert values["ild@10"] is None  # no KG


@pytest.mark.parametrize("seed", [0, 1])
def test_pwp_with_beta_zero_equals_recall(seed):
    bench = load_bench()
    lists, ctx = bench.make_input(seed, n_samples=300, n_contexts=200, num_items=400, n_genres=5,
                                  n_people=300, n_empty=20)
    values = LongTailMetrics(pwp_beta=0.0).compute(lists, ctx)
    recall_values = RankingAccuracy().compute(lists, ctx)
    assert values["pwp@10"] == pytest.approx(recall_values["recall@10"], abs=1e-15)
    assert values["pwp@50"] == pytest.approx(recall_values["recall@50"], abs=1e-15)
    assert LongTailMetrics().compute(lists, ctx)["pwp@10"] != values["pwp@10"]  # the default β = 0.5 weighs


def test_ild_of_a_list_with_only_empty_features_is_one():
    lists, ctx = fixture()
    empty_list = RankedLists("standard", np.array([[4, 5, 7]]), np.array([0]), np.array([4]))
    values = small_family().compute(empty_list, ctx)
    assert values["ild@2"] == 1.0 and values["ild@3"] == 1.0
    assert empty_feature_count(NEIGHBOURS) == 3


def test_duplicating_a_multi_label_context_leaves_list_metrics_unchanged():
    lists, ctx = fixture()
    family = small_family()
    before = family.compute(lists, ctx)
    # context 1 gets two more samples (labels 6 and 3 again)
    duplicated = RankedLists("standard", lists.top, np.array([0, 0, 1, 1, 1, 1, 1]), np.array([1, 4, 6, 7, 3, 6, 3]))
    after = family.compute(duplicated, ctx)
    for key in ("coverage@2", "coverage@3", "ild@2", "ild@3", "arp@2", "arp@3"):
        assert after[key] == before[key], key
    assert after["n_cold"] == 3


def test_no_kg_gives_null_ild_and_feature_checks():
    lists, ctx = fixture(neighbours=None)
    assert small_family().compute(lists, ctx)["ild@3"] is None
    with pytest.raises(ValueError, match="9 entries for 10"):
        neighbour_features(NEIGHBOURS[:9], 10)


def test_params_beta_is_used_and_tiers_are_validated():
    lists, ctx = fixture()
    weights = {1: 1 / 9, 4: 1 / 3, 6: 1.0, 7: 1.0, 3: 1 / 4}
    assert small_family(pwp_beta=1.0).compute(lists, ctx)["pwp@2"] == pytest.approx((1 / 9 + 1 / 4) / sum(weights.values()))
    with pytest.raises(ValueError, match="unknown tiers"):
        LongTailMetrics(tiers=("head", "mid"))
    bad = MetricContext(10, POPULARITY[:9], tiers_of(POPULARITY), None)
    with pytest.raises(ValueError, match="one entry per item"):
        small_family().compute(lists, bad)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_loop_reference_on_random_input(seed):
    bench = load_bench()
    lists, ctx = bench.make_input(seed, n_samples=300, n_contexts=200, num_items=400, n_genres=5,
                                  n_people=300, n_empty=20)
    reference = bench.reference_metrics(lists.top, lists.sample_context, lists.labels, ctx.num_items,
                                        ctx.popularity, ctx.tiers, ctx.item_neighbours, 0.5)
    values = LongTailMetrics().compute(lists, ctx)
    assert set(values) | {"n_samples", "n_contexts", "recall@1", "recall@10", "recall@50", "ndcg@10", "ndcg@50",
                          "mrr@10", "mrr@50"} == set(reference)
    for key, value in values.items():
        if reference[key] is None:
            assert value is None, key
        else:
            assert value == pytest.approx(reference[key], abs=1e-12), key


def test_registration():
    registry = Registry("metrics")
    longtail.crs_bench_register_metrics(registry)
    assert registry.get("longtail").version == "1"


# --- PROTOCOL.md Appendix A on the real INSPIRED files ----------------------------------------

APPENDIX_A = {  # (ranker, setting): values printed in Appendix A (4 decimals)
    ("popularity", "standard"): {"n_samples": 256, "recall@1": 0.0430, "recall@10": 0.1562, "recall@50": 0.3281,
                                 "ndcg@10": 0.0965, "mrr@10": 0.0778, "tail_recall@10": 0.0, "n_tail": 104,
                                 "coverage@10": 0.0068, "ild@10": 0.9910, "arp@10": 0.9966, "pwp@10": 0.0464,
                                 "coverage@50": 0.0340, "ild@50": 0.9903, "arp@50": 0.9830, "pwp@50": 0.1275},
    ("popularity", "novel"): {"n_samples": 214, "recall@1": 0.0374, "recall@10": 0.1262, "recall@50": 0.2944,
                              "ndcg@10": 0.0792, "mrr@10": 0.0646, "tail_recall@10": 0.0, "n_tail": 94,
                              "coverage@10": 0.0088, "ild@10": 0.9902, "arp@10": 0.9965, "pwp@10": 0.0359,
                              "coverage@50": 0.0360, "ild@50": 0.9905, "arp@50": 0.9827, "pwp@50": 0.1126},
    ("repeat-context", "standard"): {"n_samples": 256, "recall@1": 0.1094, "recall@10": 0.1680, "recall@50": 0.1797,
                                     "ndcg@10": 0.1438, "mrr@10": 0.1354, "tail_recall@10": 0.1058, "n_tail": 104,
                                     "coverage@10": 0.1284, "ild@10": 0.9932, "arp@10": 0.5420, "pwp@10": 0.1335},
    ("repeat-context", "novel"): {"n_samples": 214, "recall@1": 0.0, "recall@10": 0.0093, "recall@50": 0.0234,
                                  "ndcg@10": 0.0044, "mrr@10": 0.0029, "tail_recall@10": 0.0213, "n_tail": 94,
                                  "coverage@10": 0.0068, "ild@10": 0.9932, "arp@10": 0.5317, "pwp@10": 0.0112},
}


@pytest.fixture(scope="module")
def inspired_values():
    from tests.conftest import shared_data_dir

    data = shared_data_dir()
    if not (data / "inspired").is_dir():
        pytest.skip(f"INSPIRED data not found under {data} (set CRS_BENCH_DATA)")
    from harness import evaluation
    from harness.api import RunContext
    from harness.popularity import compute_statistics
    from plugins.baselines import PopularityRanker, RepeatContextRanker
    from plugins.datasets.inspired import build_inspired

    dataset = build_inspired(data)
    dataset.build_samples()
    train = dataset.splits["train"]
    stats = compute_statistics(dataset.num_items, train.dialogues, train.rec_samples)
    ctx = evaluation.metric_context(dataset, stats)
    values = {}
    for name, ranker in (("popularity", PopularityRanker), ("repeat-context", RepeatContextRanker)):
        lists = evaluation.rank_split(ranker(RunContext(dataset, stats)), dataset.splits["test"], 64)
        for setting, ranked in lists.items():
            values[name, setting] = RankingAccuracy().compute(ranked, ctx) | LongTailMetrics().compute(ranked, ctx)
    return values, ctx


@pytest.mark.data
@pytest.mark.parametrize("run", sorted(APPENDIX_A))
def test_appendix_a_inspired_test(inspired_values, run):
    values, ctx = inspired_values
    for key, expected in APPENDIX_A[run].items():
        assert values[run][key] == pytest.approx(expected, abs=5e-5), key
    assert empty_feature_count(ctx.item_neighbours) == 95  # PROTOCOL.md §4.5
    if run == ("popularity", "standard"):
        assert values[run]["coverage@10"] == 10 / 1472 and values[run]["coverage@50"] == 50 / 1472
