"""Forward+backward time of every loss plugin on a ReDial-sized head, as a ratio to plain CE measured in the same run.

    PYTHONPATH=. python benchmarks/loss_speed.py [--items 6924] [--batch 64] [--repeats 20]

Target: every loss within 10x of CE (they are O(B·C) except CSL's O(C) state and AHL's O(B·E) edges).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from harness.components import RunContext
from harness.popularity import ItemStatistics
from plugins.losses._testing import loss_registry

TARGET_RATIO = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=6924)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    counts = rng.zipf(1.6, size=args.items).clip(max=727) - 1  # long tail with zero counts
    popularity = counts.tolist()
    ctx = RunContext(dataset=None, stats=ItemStatistics(popularity=popularity, label_counts=counts.tolist()))
    logits = torch.randn(args.batch, args.items) * 3
    labels = torch.randint(0, args.items, (args.batch,))
    losses = {}
    for component in loss_registry():
        loss = component.factory(ctx)
        loss.train()
        z = logits.clone().requires_grad_(True)
        loss(z, labels).backward()  # warm-up
        losses[component.name] = (loss, z)
    samples: dict[str, list[float]] = {name: [] for name in losses}
    for _ in range(args.repeats):  # round-robin so that load from other processes hits every loss alike
        for name, (loss, z) in losses.items():
            z.grad = None
            start = time.perf_counter()
            loss(z, labels).backward()
            samples[name].append((time.perf_counter() - start) * 1e3)
    timings = {name: float(np.median(values)) for name, values in samples.items()}
    reference = timings["ce"]
    print(f"items={args.items} batch={args.batch} repeats={args.repeats}  (median ms per forward+backward, ratio to ce)")
    worst = 0.0
    for name, ms in sorted(timings.items(), key=lambda item: item[1]):
        ratio = ms / reference
        worst = max(worst, ratio)
        print(f"{name:18s} {ms:8.2f} ms  {ratio:6.2f}x")
    print(f"worst ratio {worst:.2f}x (target <= {TARGET_RATIO:.0f}x): {'OK' if worst <= TARGET_RATIO else 'SLOW'}")


if __name__ == "__main__":
    main()
