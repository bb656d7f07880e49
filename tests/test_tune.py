"""`bench tune`: a 3-trial Optuna study on synthetic trains 3 configs on the valid split, then tests the
best once; the study's trials land in the best run's record, and a second process joins the same study."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("optuna")

RECIPE = """\
model: linear-context
train: {epochs: 1}
limit: 40
search:
  trials: 3
  study: tiny
  space:
    train.lr: {low: 1.0e-4, high: 1.0e-1, log: true}
    model.params.dim: {choices: [8, 16]}
"""

COUNTER = '''
import os
from harness.api import hookimpl


@hookimpl
def crs_bench_stage_start(run, stage):
    with open(os.environ["CRS_BENCH_TEST_STAGES"], "a") as stream:
        stream.write(stage + "\\n")
'''


@pytest.fixture
def tuning(tmp_path, monkeypatch):
    recipe, counter, stages = tmp_path / "tune.yaml", tmp_path / "counter.py", tmp_path / "stages.txt"
    recipe.write_text(RECIPE)
    counter.write_text(COUNTER)
    monkeypatch.setenv("CRS_BENCH_TEST_STAGES", str(stages))
    return recipe, counter, stages


def test_three_trials_on_valid_then_one_test(run_bench, tmp_path, tuning):
    recipe, counter, stages = tuning
    code, out, err = run_bench("tune", str(recipe), "--plugin", str(counter), "--quiet",
                               "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache"))
    assert code == 0, err
    assert stages.read_text().split().count("train") == 4  # 3 trials + the best config retrained
    assert stages.read_text().split().count("test") == 1  # the test split once, for the best trial only
    [path] = (tmp_path / "results" / "runs").glob("*/record.json")
    record = json.loads(path.read_text())
    tuning_info = record["extra"]["tuning"]
    assert [t["number"] for t in tuning_info["trials"]] == [0, 1, 2]
    assert all(t["state"] == "COMPLETE" for t in tuning_info["trials"])
    values = [t["value"] for t in tuning_info["trials"]]
    assert tuning_info["best_value"] == max(values) and tuning_info["metric"] == "recall@10"
    best = tuning_info["trials"][tuning_info["best_trial"]]
    assert record["config"]["train"]["lr"] == pytest.approx(best["params"]["train.lr"])
    assert record["config"]["model"]["params"]["dim"] == best["params"]["model.params.dim"]
    # the retrained best config reproduces its trial's valid score exactly (same seed, same data)
    assert record["training"]["valid_metrics"]["recall@10"] == tuning_info["best_value"]
    assert (tmp_path / "cache" / "studies" / "tiny.journal").is_file()


def test_workers_share_the_study_and_the_final_step_reads_it(run_bench, tmp_path, tuning):
    recipe, counter, stages = tuning
    common = ["--quiet", "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache")]
    for _ in range(2):  # two workers, one trial each, no test
        code, out, err = run_bench("tune", str(recipe), "--trials", "1", "--no-final", *common)
        assert code == 0, err
    assert not (tmp_path / "results").exists()
    code, out, err = run_bench("tune", str(recipe), "--trials", "0", "--plugin", str(counter), *common)
    assert code == 0, err
    assert stages.read_text().split() == ["augment", "train", "test"]  # no new trial: the best, tested once
    [path] = (tmp_path / "results" / "runs").glob("*/record.json")
    assert len(json.loads(path.read_text())["extra"]["tuning"]["trials"]) == 2


def test_a_bad_search_space_names_its_line(run_bench, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model: linear-context\nsearch:\n  space:\n    train.lr: {low: 0.1, high: 0.01}\n")
    code, out, err = run_bench("tune", str(recipe), "--results-dir", str(tmp_path / "r"))
    assert code == 2
    assert err.strip() == (f"bench: error: {recipe}:4: search.space.train.lr needs finite numbers low < high, "
                           "got low=0.1, high=0.01")
