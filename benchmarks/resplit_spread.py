"""Split-to-split spread of resampled-split runs (`dataset.params.resplit`): for each recipe's configuration
and setting, the mean of a metric over every run, the standard deviation of the per-split means (seeds
averaged within a split) and their range, beside the mean seed-to-seed deviation within a split. It says how
much of a result is the split rather than the model.

    PYTHONPATH=. .venv/bin/python benchmarks/resplit_spread.py benchmarks/resplit_*_inspired.yaml \
        [--metric recall@10] [--results-dir results]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.config import config_hash, load_recipe, resolve  # noqa: E402
from harness.plugin_manager import load_plugins  # noqa: E402
from harness.resplit import split_of  # noqa: E402
from harness.runner import resolve_defaults  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+", type=Path)
    parser.add_argument("--metric", default="recall@10")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    registries = load_plugins(autoload=False).registries
    wanted: dict[str, str] = {}
    for recipe in args.recipes:
        for config in resolve(load_recipe(recipe)):
            wanted[config_hash(resolve_defaults(registries, config))] = recipe.stem
    values: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted((args.results_dir / "runs").glob("*/record.json")):
        record = json.loads(path.read_text())
        if record["config_hash"] not in wanted:
            continue
        for setting, metrics in record["metrics"]["rec"].items():
            if args.metric in metrics:
                values[(wanted[record["config_hash"]], setting)][split_of(record)].append(metrics[args.metric])
    print(f"| recipe | setting | {args.metric}, mean (runs) | split-to-split std | range of split means | "
          f"mean seed std within a split |")
    print("|---|---|---|---|---|---|")
    for (name, setting), by_split in values.items():
        means = [statistics.fmean(v) for _, v in sorted(by_split.items())]
        runs = sum(len(v) for v in by_split.values())
        seed = statistics.fmean([statistics.stdev(v) if len(v) > 1 else 0.0 for v in by_split.values()])
        spread = statistics.stdev(means) if len(means) > 1 else 0.0
        print(f"| {name} | {setting} | {statistics.fmean(means):.4f} ({runs}) | {spread:.4f} | "
              f"{min(means):.4f}–{max(means):.4f} ({len(means)} splits) | {seed:.4f} |")
    return 0 if values else 1


if __name__ == "__main__":
    raise SystemExit(main())
