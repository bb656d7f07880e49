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
