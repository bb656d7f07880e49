"""Issue 6: every registered loss trains KBRD on `synthetic` to finite losses and beats popularity."""
from __future__ import annotations

import math

import pytest

from harness.config import resolve
from harness.plugin_manager import load_plugins
from harness.runner import execute

SMALL = ["dataset.params.num_items=60", "dataset.params.train_dialogues=150", "dataset.params.valid_dialogues=40",
         "dataset.params.test_dialogues=60", "model.params.dim=32", "train.lr=0.01", "train.batch_size=32",
         "train.patience=5", "metrics=[ranking]"]
PLUGINS = load_plugins(autoload=False)
LOSSES = PLUGINS.registries.losses.names()


def run(tmp_path, model, loss, epochs):
    [config] = resolve(flags={"model": model, "loss": loss, "train.epochs": epochs},
                       overrides=SMALL if model != "popularity" else SMALL[:4] + SMALL[-1:])
    return execute(config, PLUGINS, results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", quiet=True)


@pytest.fixture(scope="module")
def popularity_recall(tmp_path_factory):
    return run(tmp_path_factory.mktemp("pop"), "popularity", "ce", 0)["metrics"]["rec"]["standard"]["recall@10"]


@pytest.mark.parametrize("loss", LOSSES)
def test_loss_trains_kbrd_above_popularity(loss, tmp_path, popularity_recall):
    model = "kbrd-cos" if "cosine_head" in PLUGINS.registries.losses.get(loss).requires else "kbrd"
    record = run(tmp_path, model, loss, epochs=4)
    history = record["training"]["history"]
    assert history and all(math.isfinite(h["train_loss"]) for h in history)
    assert record["metrics"]["rec"]["standard"]["recall@10"] > popularity_recall, (loss, popularity_recall)
