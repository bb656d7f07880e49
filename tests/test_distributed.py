"""`bench run --processes 2` (gloo on CPU): each rank trains on a strided share of every batch with the
gradients summed, evaluation is sharded and gathered, rank 0 alone writes. Without dropout (whose masks
each rank draws itself) every metric and every ranked list equals the one-process run's; the training
loss agrees to 1e-6 (floating-point reduction order)."""
from __future__ import annotations

import gzip
import json

import pytest

pytest.importorskip("accelerate")

ARGS = ("run", "--model", "linear-context", "--set", "model.params.dropout=0.0", "--limit", "64", "--epochs", "2",
        "--quiet")


def stored(results):
    [run_dir] = (results / "runs").iterdir()
    record = json.loads((run_dir / "record.json").read_text())
    with gzip.open(run_dir / "samples.jsonl.gz", "rt") as stream:
        return record, [json.loads(line) for line in stream]


def test_two_processes_give_the_one_process_results(run_bench, tmp_path):
    code, out, err = run_bench(*ARGS, results=tmp_path / "one")
    assert code == 0, err
    code, out, err = run_bench(*ARGS, "--processes", "2", results=tmp_path / "two")
    assert code == 0, err
    (one, one_rows), (two, two_rows) = stored(tmp_path / "one"), stored(tmp_path / "two")
    assert one["run_id"] == two["run_id"] and one["metrics"] == two["metrics"]
    assert [r.get("top") for r in one_rows] == [r.get("top") for r in two_rows]
    losses = [(a["train_loss"], b["train_loss"]) for a, b in zip(one["training"]["history"], two["training"]["history"])]
    assert len(losses) == 2 and all(abs(a - b) <= 1e-6 * abs(a) for a, b in losses)


def test_processes_refuse_resume(run_bench, tmp_path):
    code, out, err = run_bench(*ARGS, "--processes", "2", "--resume", results=tmp_path / "r")
    assert code == 2 and "--resume and --executor are not supported" in err


FAILING_RANK = '''
import os
from harness.api import hookimpl


@hookimpl
def crs_bench_epoch_end(run, epoch, metrics):
    if os.environ.get("RANK") == "1":
        raise SystemExit(3)  # rank 1 dies; rank 0 would wait for it in the next collective
'''


def test_a_failing_rank_stops_the_others(run_bench, tmp_path):
    plugin = tmp_path / "failing.py"
    plugin.write_text(FAILING_RANK)
    code, out, err = run_bench(*ARGS, "--plugin", str(plugin), "--processes", "2", results=tmp_path / "r")
    assert code != 0
    assert not list((tmp_path / "r").glob("runs/*/record.json"))


UNICRS = ("run", "--model", "unicrs", "--epochs", "1", "--quiet",
          *[arg for setting in ("dataset.params.train_dialogues=40", "dataset.params.valid_dialogues=8",
                                "dataset.params.test_dialogues=8", "dataset.params.num_items=60",
                                "model.params.preset=test-tiny", "model.params.train_backbones=false",
                                "model.params.pretrain_max_samples=24", "model.params.conv_max_samples=24",
                                "model.params.rec_max_samples=32")
            for arg in ("--set", setting)])


def test_a_plugin_owned_training_stage_splits_its_batches_over_processes(run_bench, tmp_path):
    """UniCRS trains in its own stages (plugins/unicrs/stages.py): each rank takes a share of every batch
    (`RunState.world`, `shard`) and `optimisation_step` sums losses and gradients, so two processes train
    the one-process model: same losses (1e-6), same metrics and lists (frozen backbones: no dropout)."""
    code, out, err = run_bench(*UNICRS, results=tmp_path / "one")
    assert code == 0, err
    code, out, err = run_bench(*UNICRS, "--processes", "2", results=tmp_path / "two")
    assert code == 0, err
    (one, one_rows), (two, two_rows) = stored(tmp_path / "one"), stored(tmp_path / "two")
    stages = [(one["training"]["stages"][name], two["training"]["stages"][name]) for name in ("pretrain", "conv", "rec")]
    losses = [(x["train_loss"], y["train_loss"]) for a, b in stages for x, y in zip(a["history"], b["history"])]
    assert len(losses) == 3 and all(abs(a - b) <= 1e-6 * abs(a) for a, b in losses)
    assert [r.get("top") for r in one_rows] == [r.get("top") for r in two_rows]
    assert one["metrics"]["rec"] == two["metrics"]["rec"]


def test_gcrs_refuses_several_processes(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--model", "gcrs", "--set",
                           "model.params.preset=test-tiny", "--epochs", "1", "--limit", "8", "--processes", "2",
                           "--quiet", "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "model 'gcrs' trains on one process: run it with --processes 1" in done.stderr
    assert not list((tmp_path / "r").glob("runs/*/record.json"))


def test_a_one_process_run_hands_plugin_stages_a_world_of_one_and_accelerate_state():
    """What a plugin-owned stage receives outside --processes: rank 0 of 1, and Accelerate's process state."""
    from pathlib import Path

    from harness.api import RunState, World

    run = RunState(config={}, config_hash="h", run_id="r", run_dir=Path("."), seed=0, device="cpu")
    assert run.world == World(0, 1) and run.world.main
    state = run.accelerator
    assert state.num_processes == 1 and state.process_index == 0 and str(state.device) == "cpu"
