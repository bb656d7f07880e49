"""CUDA paths: training, scoring and top-50 on the device, bf16 autocast. Marked `cuda`: skipped where CUDA
is absent (CI), run by benchmarks/gpu_check.sh on a GPU machine."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.cuda

TINY = ("--dataset", "synthetic", "--limit", "64", "--epochs", "2", "--quiet")


def record_of(results):
    [path] = results.glob("runs/*/record.json")
    return json.loads(path.read_text())


def test_a_run_on_cuda_matches_cpu(run_bench, tmp_path):
    """linear-context on synthetic, on cuda and on cpu: the same lists up to floating-point reduction order
    (recall@10 within 0.05, a couple of the 64 samples' ranks)."""
    runs = {}
    for device in ("cpu", "cuda"):
        code, out, err = run_bench("run", "--model", "linear-context", *TINY, "--device", device,
                                   results=tmp_path / device)
        assert code == 0, err
        runs[device] = record_of(tmp_path / device)
    assert runs["cuda"]["environment"]["device"] == "cuda" and runs["cuda"]["environment"].get("gpu")
    cpu, gpu = (runs[d]["metrics"]["rec"]["standard"] for d in ("cpu", "cuda"))
    assert abs(cpu["recall@10"] - gpu["recall@10"]) <= 0.05


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_precisions_train_on_cuda(run_bench, tmp_path, precision):
    code, out, err = run_bench("run", "--model", "linear-context", *TINY, "--device", "cuda",
                               "--set", f"train.precision={precision}", results=tmp_path / precision)
    assert code == 0, err
    record = record_of(tmp_path / precision)
    assert record["config"]["train"]["precision"] == precision
    assert all(entry["train_loss"] == entry["train_loss"] for entry in record["training"]["history"])  # no NaN


def test_top_items_stays_on_the_device_and_matches_cpu():
    import torch

    from harness.ranking import top_items

    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(256, 6924, generator=generator)
    scores[:, :100] = scores[:, :1]  # ties, broken by ascending item index on both devices
    excluded = torch.zeros_like(scores, dtype=torch.bool)
    excluded[:, 5:9] = True
    on_gpu = top_items(scores.cuda(), 50, excluded.cuda())
    assert on_gpu.device.type == "cuda"
    assert torch.equal(on_gpu.cpu(), top_items(scores, 50, excluded))

