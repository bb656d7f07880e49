"""Start-up time of `bench --help` and `bench plugins`, against references measured in the same run.

Target (issue 2): both under 1.5 s on a 2-core CPU, because neither imports torch or transformers.
Usage: .venv/bin/python benchmarks/bench_cli_startup.py [--repeats N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_SECONDS = 1.5
BENCH = Path(sys.executable).with_name("bench")


def wall_time(command: list[str], repeats: int) -> float:
    """Median wall time of `repeats` runs, after one warm-up run (bytecode caches)."""
    env = {**os.environ, "CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    subprocess.run(command, capture_output=True, env=env, check=True)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, env=env, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    python_start = wall_time([sys.executable, "-c", "pass"], args.repeats)
    torch_import = wall_time([sys.executable, "-c", "import torch"], args.repeats)
    rows = [("python -c pass (reference)", python_start), ("python -c 'import torch' (reference)", torch_import)]
    failed = False
    for label, command in (("bench --help", [str(BENCH), "--help"]), ("bench plugins", [str(BENCH), "plugins"])):
        seconds = wall_time(command, args.repeats)
        rows.append((label, seconds))
        failed |= seconds >= TARGET_SECONDS
    print(f"{'command':<40} {'median s':>9} {'x python':>9} {'x torch import':>15}")
    for label, seconds in rows:
        print(f"{label:<40} {seconds:>9.3f} {seconds / python_start:>9.1f} {seconds / torch_import:>15.2f}")
    print(f"target: bench commands < {TARGET_SECONDS} s -> {'FAIL' if failed else 'ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
