"""Training throughput of `bench run --processes 2` (gloo on CPU) against one process, in the same run.

`hybrid` on `synthetic` (dropout 0, so both runs train the same model, and the metrics must agree), warm
caches; the figure is the record's `training.throughput_samples_per_second` (samples per second of the
training epochs, evaluation excluded), with the wall time of the whole command beside it. The load
average is printed with the figures: on a shared 2-core machine it decides them.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_ddp.py [--epochs 2]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    base = ["--model", "hybrid", "--set", "model.params.dim=64", "--set", "model.params.dropout=0.0",
            "--epochs", str(args.epochs), "--quiet"]
    figures = {}
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as scratch:
        cache = ["--cache-dir", str(Path(scratch) / "cache")]
        # warm-up over every sample (no --limit): the text encoder's vectors of all contexts get cached, so
        # neither timed run pays for encoding
        subprocess.run([sys.executable, "-m", "harness.cli", "run", *base, "--epochs", "1", *cache,
                        "--results-dir", str(Path(scratch) / "warm")], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        load = os.getloadavg()
        for processes in (1, 2):
            results = Path(scratch) / f"p{processes}"
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "harness.cli", "run", *base, *cache, "--results-dir", str(results),
                            "--processes", str(processes)], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - started
            [path] = (results / "runs").glob("*/record.json")
            record = json.loads(path.read_text())
            figures[processes] = (record["training"]["throughput_samples_per_second"], wall, record["metrics"])
    print(f"cpus: {os.cpu_count()}   load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in load)}")
    for processes, (throughput, wall, _) in figures.items():
        print(f"{processes} process(es): {throughput:8.1f} training samples/s   (whole run {wall:.1f} s)")
    print(f"ratio 2 / 1 processes: {figures[2][0] / figures[1][0]:.2f}x   identical metrics: "
          f"{figures[1][2] == figures[2][2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
