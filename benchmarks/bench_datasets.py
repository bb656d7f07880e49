"""Dataset loading speed: first processing and cache loads of INSPIRED and ReDial.

Targets (issue 3): INSPIRED from cache < 2 s; first processing of ReDial < 60 s. Figures are
printed next to a reference measured in the same run: the time to merely parse every input file
with `json` / `csv` (the floor any loader pays), so that ratios stay meaningful across machines.
`content hash` is what every load pays to key the cache by content: the SHA-256 of every input file's
decompressed bytes (no hash is memoized from size and mtime); target < 1 s.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_datasets.py [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.dataset_cache import content_sha256, load_dataset  # noqa: E402
from harness.registry import Registry  # noqa: E402
from plugins.datasets import inspired, redial  # noqa: E402
from plugins.datasets.common import open_text  # noqa: E402

TARGETS = {"inspired": ("cache", 2.0), "redial": ("first", 60.0)}
HASH_TARGET = 1.0


def parse_only(paths: list[Path]) -> None:
    """Reference: parse every file, nothing else."""
    for path in paths:
        name = path.name.removesuffix(".gz")
        with open_text(path) as handle:
            if name.endswith(".jsonl"):
                for line in handle:
                    json.loads(line)
            elif name.endswith(".csv"):
                list(csv.reader(handle))
            else:
                json.load(handle)


def hash_all(paths: list[Path]) -> None:
    """What the cache key costs on every load: a content hash of every input file."""
    for path in paths:
        content_sha256(path)


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("CRS_BENCH_DATA", ROOT.parent / "shared" / "data")))
    args = parser.parse_args()
    registry = Registry("datasets")
    inspired.crs_bench_register_datasets(registry)
    redial.crs_bench_register_datasets(registry)
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-datasets-") as cache:
        print(f"{'dataset':10} {'parse only':>11} {'first load':>11} {'cache load':>11} {'content hash':>13} "
              f"{'first/parse':>12} {'cache/parse':>12} {'hash/parse':>11}  targets")
        for name in ("inspired", "redial"):
            component = registry.get(name)
            try:
                files = component.extra["input_files"](args.data_dir)
            except Exception as error:  # noqa: BLE001 - report and continue
                print(f"{name:10} skipped: {error}")
                continue
            reference = timed(lambda: parse_only(files), repeat=2)
            first = timed(lambda: load_dataset(component, args.data_dir, {}, Path(cache)))
            warm = timed(lambda: load_dataset(component, args.data_dir, {}, Path(cache)), repeat=3)
            hashing = timed(lambda: hash_all(files), repeat=3)
            which, limit = TARGETS[name]
            measured = warm if which == "cache" else first
            ok, hash_ok = measured < limit, hashing < HASH_TARGET
            failed |= not (ok and hash_ok)
            print(f"{name:10} {reference:10.2f}s {first:10.2f}s {warm:10.2f}s {hashing:12.3f}s "
                  f"{first / reference:11.1f}x {warm / reference:11.2f}x {hashing / reference:10.2f}x  "
                  f"{which} < {limit:.0f}s: {'ok' if ok else 'MISSED'} ({measured:.2f}s); "
                  f"hash < {HASH_TARGET:.0f}s: {'ok' if hash_ok else 'MISSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
