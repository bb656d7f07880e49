"""End-to-end runs on a small synthetic dataset: determinism, resume, model selection, records."""
from __future__ import annotations

import json

import pytest

from harness import hookimpl
from harness.config import resolve
from harness.plugin_manager import load_plugins
from harness.results import read_samples
from harness.requirements import RequirementError
from harness.runner import execute

SMALL = ["dataset.params.train_dialogues=200", "dataset.params.valid_dialogues=40",
         "dataset.params.test_dialogues=40", "dataset.params.num_items=100"]


def run(tmp_path, plugins, flags, overrides=(), resume=False, name="results"):
    [config] = resolve(flags=flags, overrides=[*SMALL, *overrides])
    return execute(config, plugins, results_dir=tmp_path / name, cache_dir=tmp_path / "cache",
                   resume=resume, quiet=True)


def test_same_seed_gives_identical_metrics(tmp_path, plugins):
    first = run(tmp_path, plugins, {"model": "linear-context", "train.epochs": 3}, name="a")
    second = run(tmp_path, plugins, {"model": "linear-context", "train.epochs": 3}, name="b")
    assert json.dumps(first["metrics"], sort_keys=True) == json.dumps(second["metrics"], sort_keys=True)
    other_seed = run(tmp_path, plugins, {"model": "linear-context", "train.epochs": 3, "seed": 5}, name="c")
    assert other_seed["metrics"] != first["metrics"]


def test_interrupted_run_resumes_to_the_same_metrics(tmp_path, plugins):
    flags = {"model": "linear-context", "train.epochs": 4}
    uninterrupted = run(tmp_path, plugins, flags, ["train.patience=10"], name="whole")

    interrupting = load_plugins(autoload=False)

    class CtrlC:
        @hookimpl
        def crs_bench_epoch_end(self, run, epoch, metrics):
            if epoch == 2:
                raise KeyboardInterrupt

    interrupting.manager.register(CtrlC(), name="ctrl-c")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, interrupting, flags, ["train.patience=10"], name="split")
    [run_dir] = (tmp_path / "split" / "runs").iterdir()
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "record.json").exists()

    resumed = run(tmp_path, plugins, flags, ["train.patience=10"], resume=True, name="split")
    assert resumed["training"]["epochs_run"] == 4
    assert [h["epoch"] for h in resumed["training"]["history"]] == [1, 2, 3, 4]
    assert resumed["training"]["history"] == uninterrupted["training"]["history"]
    assert resumed["metrics"] == uninterrupted["metrics"]
    assert not (run_dir / "checkpoint.pt").exists()  # cleaned up once the record is written


def test_learned_model_beats_popularity_on_synthetic(tmp_path, plugins):
    learned = run(tmp_path, plugins, {"model": "linear-context", "train.epochs": 15}, ["train.lr=0.01"])
    popular = run(tmp_path, plugins, {"model": "popularity"})
    assert learned["metrics"]["rec"]["standard"]["recall@10"] > popular["metrics"]["rec"]["standard"]["recall@10"] + 0.05
    assert learned["metrics"]["rec"]["novel"]["recall@10"] > popular["metrics"]["rec"]["novel"]["recall@10"] + 0.05


def test_model_selection_keeps_the_best_validation_epoch(tmp_path, plugins):
    record = run(tmp_path, plugins, {"model": "linear-context", "train.epochs": 6}, ["train.lr=0.05"])
    history = record["training"]["history"]
    best = max(history, key=lambda h: h["valid_recall@10"])
    assert record["training"]["best_epoch"] == best["epoch"]
    assert record["training"]["valid_metrics"]["recall@10"] == pytest.approx(best["valid_recall@10"])


def test_record_and_samples_carry_provenance(tmp_path, plugins):
    record = run(tmp_path, plugins, {"model": "popularity"})
    for field in ("config_hash", "config", "seeds", "code", "packages", "dataset", "plugins", "environment",
                  "timings", "tasks", "metrics", "metric_families", "stages"):
        assert field in record
    assert record["dataset"]["fingerprint"] and record["packages"]["torch"].startswith("2.")
    assert "git_commit" in record["code"] and "git_dirty" in record["code"]
    assert record["components"]["model"]["origin"]["source"] == "builtin"
    assert record["stages"] == {"train": "harness.stages", "predict": "harness.stages"}
    assert record["tasks"] == ["rec"]  # popularity does not speak and no generator is attached
    assert record["metric_families"]["longtail"] == {"task": "rec", "version": "1", "params": {"pwp_beta": 0.5}}
    run_dir = tmp_path / "results" / "runs" / record["run_id"]
    rows = read_samples(run_dir)
    standard = [r for r in rows if r["setting"] == "standard"]
    assert len(standard) == record["metrics"]["rec"]["standard"]["n_samples"]
    assert all(len(r["top"]) == 50 for r in rows)
    # popularity: one global list in `standard`
    assert len({tuple(r["top"]) for r in standard}) == 1


def test_limit_caps_samples_per_split(tmp_path, plugins):
    record = run(tmp_path, plugins, {"model": "popularity", "limit": 7})
    assert record["metrics"]["rec"]["standard"]["n_samples"] == 7
    assert record["dataset"]["splits"]["train"]["rec_samples"]["standard"] == 7


def test_unmet_loss_requirement_fails_before_training(tmp_path):
    path = tmp_path / "cosine_loss.py"
    path.write_text("from harness import hookimpl\n\n@hookimpl\ndef crs_bench_register_losses(registry):\n"
                    "    registry.add('needs-cos', lambda ctx: None, 'x', requires={'cosine_head', 'item_counts'})\n")
    plugins = load_plugins(extra=[str(path)], autoload=False)
    with pytest.raises(RequirementError, match="loss 'needs-cos' needs a model with a cosine head \\('cosine_head'\\); "
                                               "model 'linear-context' does not provide it"):
        run(tmp_path, plugins, {"model": "linear-context", "loss": "needs-cos"})
    assert not (tmp_path / "results").exists()


def test_the_code_version_is_read_once_per_process_at_its_first_run(monkeypatch):
    """A commit made while a long run trains must not relabel its record: the checkout is read when the
    process starts its first run, and every later record of the process says the same."""
    from harness import provenance

    states = iter([{"git_commit": "a" * 40, "git_dirty": False}, {"git_commit": "b" * 40, "git_dirty": True}])
    monkeypatch.setattr(provenance, "code_version", lambda: next(states))
    monkeypatch.setattr(provenance, "_PROCESS_CODE", [])
    first, later = provenance.process_code_version(), provenance.process_code_version()
    assert first == later == {"git_commit": "a" * 40, "git_dirty": False}
