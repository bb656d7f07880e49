"""Recall@k, NDCG@k, MRR@k (PROTOCOL.md §3): hand-computed fixtures, edge cases, loop oracle."""
from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.ranking import MetricContext, RankedLists
from harness.registry import Registry
from plugins.metrics import recall
from plugins.metrics.recall import RankingAccuracy

REPO = Path(__file__).resolve().parents[1]


def load_bench():
    """The benchmark module holds the straightforward loop reference used as an oracle."""
    spec = importlib.util.spec_from_file_location("bench_metrics", REPO / "benchmarks" / "bench_metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_context(num_items: int = 8) -> MetricContext:
    popularity = np.zeros(num_items, dtype=np.int64)
    return MetricContext(num_items, popularity, np.array(["tail"] * num_items))


def tiny_lists() -> RankedLists:
    # context 0 ranks items 0..3, context 1 ranks 4..7; labels at ranks 2, 4, 1 and absent
    top = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    return RankedLists("standard", top, np.array([0, 0, 1, 1]), np.array([1, 3, 4, 0]))


def test_hand_computed_values():
    family = RankingAccuracy(recall_ks=(1, 2, 4), ndcg_ks=(2, 4), mrr_ks=(2, 4))
    values = family.compute(tiny_lists(), tiny_context())
    assert values["n_samples"] == 4 and values["n_contexts"] == 2
    assert values["recall@1"] == pytest.approx(1 / 4)
    assert values["recall@2"] == pytest.approx(2 / 4)
    assert values["recall@4"] == pytest.approx(3 / 4)
    assert values["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert values["ndcg@4"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(5)) / 4)
    assert values["mrr@2"] == pytest.approx((1 + 1 / 2) / 4)
    assert values["mrr@4"] == pytest.approx((1 + 1 / 2 + 1 / 4) / 4)


def test_default_keys_are_the_protocol_keys():
    top = np.stack([np.arange(50), np.arange(50) + 5, np.arange(50) + 10])
    # label 0 at rank 1 of context 0, label 54 at rank 50 of context 1, label 5 absent from context 2
    lists = RankedLists("standard", top, np.array([0, 1, 2]), np.array([0, 54, 5]))
    values = RankingAccuracy().compute(lists, tiny_context(60))
    assert list(values) == ["n_samples", "n_contexts", "recall@1", "recall@10", "recall@50",
                            "ndcg@10", "ndcg@50", "mrr@10", "mrr@50"]
    assert values["recall@1"] == values["recall@10"] == pytest.approx(1 / 3)
    assert values["recall@50"] == pytest.approx(2 / 3)
    assert values["ndcg@10"] == pytest.approx(1 / 3)
    assert values["ndcg@50"] == pytest.approx((1 + 1 / math.log2(51)) / 3)
    assert values["mrr@50"] == pytest.approx((1 + 1 / 50) / 3)


def test_empty_sample_set_is_null_with_zero_count():
    lists = RankedLists("novel", np.zeros((0, 4), dtype=np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    values = RankingAccuracy(recall_ks=(1,), ndcg_ks=(2,), mrr_ks=(2,)).compute(lists, tiny_context())
    assert values == {"n_samples": 0, "n_contexts": 0, "recall@1": None, "ndcg@2": None, "mrr@2": None}


def test_out_of_range_label_is_an_error():
    lists = tiny_lists()
    lists.labels[2] = 8
    with pytest.raises(ValueError, match="labels.*outside"):
        RankingAccuracy().compute(lists, tiny_context())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_loop_reference_on_random_input(seed):
    bench = load_bench()
    lists, ctx = bench.make_input(seed, n_samples=300, n_contexts=200, num_items=400, n_genres=5,
                                  n_people=300, n_empty=20)
    reference = bench.reference_metrics(lists.top, lists.sample_context, lists.labels, ctx.num_items,
                                        ctx.popularity, ctx.tiers, ctx.item_neighbours)
    values = RankingAccuracy().compute(lists, ctx)
    for key, value in values.items():
        assert value == pytest.approx(reference[key], abs=1e-12), key


def test_registration_and_cheap_import():
    registry = Registry("metrics")
    recall.crs_bench_register_metrics(registry)
    assert registry.get("ranking").version == "1"
    code = ("import sys, plugins.metrics.recall, plugins.metrics.longtail, plugins.metrics.conversation, "
            "harness.significance; print(','.join(m for m in ('scipy', 'nltk', 'sacrebleu', 'rouge_score', "
            "'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert out.stdout.strip() == ""


def test_top_items_defers_its_checks_to_one_read_when_asked():
    """`rank_split` collects the NaN and candidate-count flags of every batch on the device and reads them
    once (`raise_on_problems`); called alone, `top_items` checks at once. Both say the same."""
    torch = pytest.importorskip("torch")
    from harness.ranking import raise_on_problems, top_items

    scores = torch.arange(60, dtype=torch.float32).repeat(2, 1)
    checks: list = []
    top = top_items(scores, 50, checks=checks)
    assert top[0, :3].tolist() == [59, 58, 57] and len(checks) == 1
    raise_on_problems(checks)  # nothing wrong: no error
    bad = scores.clone()
    bad[1, 7] = float("nan")
    top_items(bad, 50, checks=checks)  # no error yet
    with pytest.raises(ValueError, match="model returned NaN scores"):
        raise_on_problems(checks)
    with pytest.raises(ValueError, match="model returned NaN scores"):
        top_items(bad, 50)
    excluded = torch.zeros(2, 60, dtype=torch.bool)
    excluded[0, :11] = True  # 49 candidates left in row 0
    checks = []
    top_items(scores, 50, excluded, checks=checks)
    with pytest.raises(ValueError, match="fewer than 50 candidates left after excluding context items"):
        raise_on_problems(checks)


def test_rank_split_refuses_nan_scores(plugins):
    torch = pytest.importorskip("torch")
    from harness.evaluation import rank_split
    from plugins.synthetic import build_synthetic

    split = build_synthetic(num_items=60, train_dialogues=8, valid_dialogues=4, test_dialogues=4).splits["test"]

    class NaNModel:
        trainable = False

        def make_batch(self, split, chunk):
            return len(chunk)

        def scores(self, batch):
            out = torch.zeros(batch, 60)
            out[-1, 3] = float("nan")  # only the last context of the last batch
            return out

    with pytest.raises(ValueError, match="model returned NaN scores"):
        rank_split(NaNModel(), split, batch_size=2)
