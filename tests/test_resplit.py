"""Resampled splits (`dataset.params.resplit`): the official sizes, every dialogue once, a fingerprint and a
run id per split, one leaderboard row over splits x seeds, and a bootstrap that resamples within splits."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.loading import load
from harness.ranking import MetricContext, RankedLists

SMALL = {"num_items": 60, "train_dialogues": 30, "valid_dialogues": 6, "test_dialogues": 4}


def dataset(plugins, tmp_path, **params):
    return load(plugins.registries.datasets.get("synthetic"), {**SMALL, **params}, None, tmp_path / "cache")


def dialogue_ids(data, split):
    return [d.id for d in data.splits[split].dialogues]


def test_a_resplit_keeps_the_official_sizes_and_deals_every_dialogue_once(plugins, tmp_path):
    official = dataset(plugins, tmp_path)
    first, again, second = (dataset(plugins, tmp_path, resplit=k) for k in (1, 1, 2))
    assert [len(first.splits[s].dialogues) for s in ("train", "valid", "test")] == [30, 6, 4]
    pooled = sorted(i for s in ("train", "valid", "test") for i in dialogue_ids(official, s))
    assert sorted(i for s in ("train", "valid", "test") for i in dialogue_ids(first, s)) == pooled  # 40 once each
    assert len(set(pooled)) == 40
    assert dialogue_ids(first, "test") == dialogue_ids(again, "test")  # seeded by the index alone
    assert dialogue_ids(first, "test") != dialogue_ids(second, "test") != dialogue_ids(official, "test")
    assert len({official.fingerprint, first.fingerprint, second.fingerprint}) == 3
    assert first.fingerprint == again.fingerprint
    assert first.info["resplit"] == 1 and first.info["splits_of"] == official.fingerprint
    # samples are rebuilt from the re-dealt dialogues: as many as the same dialogues give officially
    per_dialogue = {d.id: 0 for s in ("train", "valid", "test") for d in official.splits[s].dialogues}
    for s in ("train", "valid", "test"):
        for sample in official.splits[s].rec_samples:
            per_dialogue[official.splits[s].dialogues[sample.dialogue_index].id] += 1
    assert len(first.splits["test"].rec_samples) == sum(per_dialogue[i] for i in dialogue_ids(first, "test"))
    assert dataset(plugins, tmp_path, resplit=0).fingerprint == official.fingerprint


def test_split_zero_is_the_official_config_and_a_bad_index_names_its_line(tmp_path):
    from harness.config import ConfigError, config_hash, load_recipe, resolve
    from harness.results import run_id_for

    [plain] = resolve(None, {}, [])
    [zero] = resolve(None, {}, ["dataset.params.resplit=0"])
    [three] = resolve(None, {}, ["dataset.params.resplit=3"])
    assert zero == plain  # dropped: official runs keep their ids
    assert config_hash(three) == config_hash(plain)  # the split varies like the seed ...
    assert run_id_for(three, config_hash(three)) == run_id_for(plain, config_hash(plain)).replace("__seed0", "__split3__seed0")
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("dataset:\n  name: synthetic\n  params:\n    resplit: -1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:4: dataset.params.resplit must be a non-negative integer"):
        resolve(load_recipe(recipe), {}, [])


def test_leaderboard_rows_aggregate_over_splits_and_seeds(run_bench, tmp_path):
    recipe = tmp_path / "splits.yaml"
    recipe.write_text("seeds: [0, 1]\ngrid:\n  model: [popularity, repeat-context]\n  dataset.params.resplit: [0, 1, 2]\n"
                      "dataset: {name: synthetic, params: {num_items: 60, train_dialogues: 30, valid_dialogues: 6, "
                      "test_dialogues: 6}}\n")
    code, out, err = run_bench("run", str(recipe), "--quiet")
    assert code == 0, err
    records = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*/record.json")]
    popularity = [r for r in records if r["config"]["model"]["name"] == "popularity"]
    assert sorted((r["dataset"]["resplit"], r["config"]["seed"]) for r in popularity) == \
        [(k, s) for k in (0, 1, 2) for s in (0, 1)]
    assert len({r["dataset"]["fingerprint"] for r in records}) == 3 and len({r["config_hash"] for r in popularity}) == 1
    code, out, err = run_bench("leaderboard", "--print")
    assert code == 0, err
    resampled_part = out[out.index("· resampled splits"):]
    rows = [line for line in resampled_part.splitlines() if line.startswith(("| popularity", "| repeat-context"))]
    assert rows and all("| 3×2 |" in row for row in rows)
    board = json.loads((tmp_path / "results" / "LEADERBOARD.json").read_text())
    official = next(t for t in board if t["task"] == "rec" and t["setting"] == "standard" and "splits" not in t)
    # the official split's table keeps the official runs only: its numbers are what a paper reports
    assert [r["seeds"] for r in official["rows"]] == [[0, 1], [0, 1]] and all("splits" not in r for r in official["rows"])
    standard = next(t for t in board if t["task"] == "rec" and t["setting"] == "standard"
                    and t.get("splits") == "resampled")
    assert len(standard["rows"]) == 2  # one table for all three splits, one row per model
    row = next(r for r in standard["rows"] if r["model"] == "popularity")
    assert row["splits"] == [0, 1, 2] and row["seeds"] == [0, 0, 0, 1, 1, 1]
    recalls = [r["metrics"]["rec"]["standard"]["recall@10"] for r in popularity]
    assert row["metrics"]["recall@10"]["mean"] == pytest.approx(np.mean(recalls))
    assert any("recall@10" in r["tied_with_best"] for r in standard["rows"])  # the bootstrap over splits ran
    # `bench compare` pairs the two models split by split
    runs = tmp_path / "results" / "runs"
    code, out, err = run_bench("compare", str(runs / "*__popularity__*"), str(runs / "*__repeat-context__*"), "--json")
    assert code == 0, err
    assert "recall@10" in json.loads(out)["standard"]


def lists(hits: list[bool], ids: list[str]) -> RankedLists:
    """One sample per context; a hit puts the label (item 0) first, a miss ranks it nowhere."""
    top = np.array([[0] + list(range(1, 50)) if hit else list(range(1, 51)) for hit in hits])
    return RankedLists("standard", top, np.arange(len(hits)), np.zeros(len(hits), dtype=np.int64), ids)


def test_the_bootstrap_over_splits_resamples_within_each_split(plugins):
    from harness.significance import paired_bootstrap, paired_bootstrap_splits

    family = plugins.registries.metrics.get("ranking").build()
    ctx = MetricContext(num_items=60, popularity=np.zeros(60), tiers=np.zeros(60))
    # split 0: A hits all 4 samples, B none; split 1: both hit the same 2 of 4 (a paired difference of 0)
    a = [[lists([True] * 4, ["s0/a", "s0/b", "s0/c", "s0/d"])], [lists([True, True, False, False], list("wxyz"))]]
    b = [[lists([False] * 4, ["s0/a", "s0/b", "s0/c", "s0/d"])], [lists([True, True, False, False], list("wxyz"))]]
    result = paired_bootstrap_splits(a, b, ctx, [family], resamples=200)["recall@10"]
    assert result["a"] == pytest.approx((1.0 + 0.5) / 2) and result["b"] == pytest.approx((0.0 + 0.5) / 2)
    # within-split draws: split 0's difference is 1 in every resample, split 1's 0: the average is 0.5 always
    assert result["low"] == pytest.approx(0.5) and result["high"] == pytest.approx(0.5) and result["p"] == 0.0
    # one split alone is the ordinary paired bootstrap
    alone = paired_bootstrap_splits(a[:1], b[:1], ctx, [family], resamples=200)["recall@10"]
    assert alone == paired_bootstrap(a[0], b[0], ctx, [family], resamples=200)["recall@10"]
