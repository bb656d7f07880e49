"""The example plugin against the crs-bench conformance kit. Run with the plugin installed:
``pytest examples/crs-bench-example-plugin/tests``."""
from __future__ import annotations

import pytest

from harness.testing import check_augmenter, check_loss, check_metric, check_model


def test_item_knn_is_a_recommender():
    result = check_model("item-knn", {"k": 10})
    assert result.record["components"]["model"]["details"]["k"] == 10


def test_popularity_ce_is_a_loss():
    check_loss("popularity-ce", {"penalty": 0.5}, model="item-knn")


@pytest.mark.parametrize("params", [{}, {"novelty_ks": [5, 10]}])
def test_novelty_is_a_metric_family(params):
    result = check_metric("novelty", params)
    standard = result.record["metrics"]["rec"]["standard"]
    assert standard["novelty@10"] > 0


def test_tail_duplicate_is_an_augmenter():
    result = check_augmenter("tail-duplicate", {"copies": 2})
    assert result.record["augmentation"]["added_dialogues"] > 0
