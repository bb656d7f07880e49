"""Wall time of a 12-cell grid of `hybrid` on `synthetic`: the `ray` executor with 2 workers against the
`local` executor, in the same run, on the same warm caches.

The grid is 3 learning rates x 4 seeds of a small `hybrid`, trained for `--epochs` epochs without early
stopping, so the cell size is chosen: the default, 50 epochs, gives cells of about 9 s on a quiet 2-core
CPU. That is still shorter than a real grid cell (an INSPIRED hybrid or LumiCRS run takes 35-60 s), and long
enough that Ray's fixed cost (start-up, workers importing torch, shutdown: about 9 s, measured and printed)
does not decide the ratio; `--epochs 1` (cells of about 1 s) measures that fixed cost instead (0.77x on a
quiet machine). The processed dataset and the text-encoder vectors of every sample are cached by a warm-up
run first, so both executors do the same work. Each executor writes to its own results directory; the
metrics of the two must be identical. Every cell's torch uses one thread (the local run too), so the ratio
measures parallel cells, not intra-op threads. The load average is printed with the figures: on a shared
machine it decides them.

Target (issue 19): ray / local wall-time ratio >= 1.6x on 2 cores.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_executors.py [--workers 2] [--epochs 50] [--dim 32]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.6

RECIPE = """\
description: bench_executors.py - 12 cells of a small hybrid on synthetic
dataset: synthetic
model: {{name: hybrid, params: {{dim: {dim}, num_bases: 2}}}}
train: {{epochs: {epochs}, patience: {epochs}}}
seeds: [0, 1, 2, 3]
grid:
  train.lr: [0.001, 0.003, 0.01]
"""


def bench(*args: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness.cli", "run", *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def metrics(results: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text())["metrics"] for p in (results / "runs").glob("*/record.json")}


def cell_seconds(results: Path) -> float:
    """The cells' own run time (record timings), summed: the work, without start-up or idle workers."""
    return sum(json.loads(p.read_text())["timings"]["total_seconds"] for p in (results / "runs").glob("*/record.json"))


def ray_overhead(workers: int, env: dict[str, str]) -> float:
    """Seconds to start a local Ray instance, start its workers (torch imported) and shut it down."""
    probe = ("import time; t = time.perf_counter(); import ray\n"
             f"ray.init(num_cpus={workers}, include_dashboard=False, log_to_driver=False, configure_logging=False)\n"
             "f = ray.remote(lambda: __import__('torch') and 1)\n"
             f"ray.get([f.remote() for _ in range({workers})]); ray.shutdown(); print(time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=50,
                        help="epochs per cell, all of them run (patience = epochs): more gives longer cells")
    parser.add_argument("--dim", type=int, default=32, help="hybrid width (more: heavier cells)")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD": "1",
           "RAY_memory_monitor_refresh_ms": "0",  # other processes' memory must not get the cells killed
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="bench-executors-") as scratch:
        root = Path(scratch)
        recipe = root / "grid.yaml"
        recipe.write_text(RECIPE.format(epochs=args.epochs, dim=args.dim))
        common = ["--quiet", "--cache-dir", str(root / "cache")]
        # warm-up over every sample (no --limit), so the text encoder's vectors of all contexts are cached
        # and neither timed executor pays for encoding
        warm = bench("--model", "hybrid", "--set", f"model.params.dim={args.dim}", "--set", "model.params.num_bases=2",
                     "--epochs", "1", "--results-dir", str(root / "warm"), *common, env=env)
        load_before = os.getloadavg()
        local = bench(str(recipe), "--results-dir", str(root / "local"), *common, env=env)
        ray = bench(str(recipe), "--results-dir", str(root / "ray"), "--executor", "ray",
                    "--executor-option", f"workers={args.workers}", *common, env=env)
        load_after = os.getloadavg()
        same = metrics(root / "local") == metrics(root / "ray") and len(metrics(root / "local")) == 12
        work = {name: cell_seconds(root / name) for name in ("local", "ray")}
        overhead = ray_overhead(args.workers, env)
    ratio = local / ray
    print(f"cpus: {os.cpu_count()}   load average (1, 5, 15 min) before: "
          f"{', '.join(f'{x:.2f}' for x in load_before)}; after: {', '.join(f'{x:.2f}' for x in load_after)}")
    print(f"warm-up (caches): {warm:.1f} s")
    print(f"cells: hybrid dim {args.dim}, {args.epochs} epoch(s) on synthetic; a cell's own run time averages "
          f"{work['local'] / 12:.2f} s under the local executor, {work['ray'] / 12:.2f} s on a Ray worker beside another")
    print(f"local executor, 12 cells:            {local:7.1f} s")
    print(f"ray executor, {args.workers} workers, 12 cells:    {ray:7.1f} s   (Ray start-up included)")
    print(f"cells' own run time, summed: local {work['local']:.1f} s, ray {work['ray']:.1f} s "
          f"(a cell on a Ray worker shares the cores with the other worker)")
    print(f"Ray fixed cost (start, {args.workers} workers importing torch, shutdown), measured alone: {overhead:.1f} s")
    print(f"ratio local / ray: {ratio:.2f}x (target >= {TARGET}x)   identical metrics: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
