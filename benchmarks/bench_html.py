"""Writing the HTML report for all committed records, against the Markdown leaderboard rebuild in the same run.

Target (issue 20): the site (`bench leaderboard --html DIR`: index, a page per run group, the figures as PNG
and SVG) is written in under 10 s on a 2-core CPU. The reference is what `bench leaderboard` does anyway:
rebuilding LEADERBOARD.{md,csv,json} from the records, with the paired bootstrap behind the ≈ marks. The
site renders the tables that rebuild prepared (`outputs(prepared=...)`), so its time is what `--html` adds.
Item tiers, titles and contexts come from the datasets in $CRS_BENCH_DATA (default ../shared/data) when
present; without them the site is written without tiers and long-tail curves (reported). The first write
loads the datasets (through the harness's warm dataset cache); the report keeps what it takes from them
under <cache>/report/, which the later writes read. The CPU seconds (this process and the figure workers)
say what the wall time would be on an idle single core; on a loaded machine the wall time is the larger.

Usage: .venv/bin/python benchmarks/bench_html.py [--results-dir results] [--repeats N]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGET_SECONDS = 10.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=ROOT / "results")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache")
    parser.add_argument("--repeats", type=int, default=3, help="site writes (median); the rebuild runs once")
    args = parser.parse_args()

    from harness.leaderboard import outputs
    from harness.plugin_manager import load_plugins
    from harness.report import write_site

    data_dir = Path(os.environ.get("CRS_BENCH_DATA", ROOT.parent / "shared" / "data"))
    data_dir = data_dir if data_dir.is_dir() else None
    registries = load_plugins(autoload=False).registries
    load = os.getloadavg()[0]

    started = time.perf_counter()
    prepared: dict = {}
    outputs(args.results_dir, registries, prepared=prepared)
    markdown = time.perf_counter() - started

    runs = len({run_dir for table in prepared["tables"] for row in table.rows for run_dir in row.run_dirs})
    site_times, cpu_times, phases = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        # the harness's dataset cache as it is, the report's own cache (<cache>/report/) empty: write 1 loads
        # the datasets, the next ones read what the first kept
        cache = Path(scratch) / "cache"
        cache.mkdir()
        if (args.cache_dir / "datasets").is_dir():
            (cache / "datasets").symlink_to((args.cache_dir / "datasets").resolve())
        for repeat in range(args.repeats):
            timings: dict[str, float] = {}
            cpu = time.process_time() + _children_cpu()
            started = time.perf_counter()
            write_site(Path(scratch) / f"site{repeat}", prepared["tables"], prepared["views"], registries, data_dir,
                       cache, timings=timings)
            site_times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() + _children_cpu() - cpu)
            phases.append(timings)
        files = list((Path(scratch) / "site0").rglob("*"))
        size = sum(path.stat().st_size for path in files if path.is_file())
    site = statistics.median(site_times)
    print(f"records: {args.results_dir} ({runs} runs, {len(prepared['tables'])} tables; data: {data_dir or 'none: no tiers'}); "
          f"load average {load:.1f} on {os.cpu_count()} CPUs")
    print(f"{'step':<52} {'seconds':>8}")
    print(f"{'Markdown leaderboard rebuild (bench leaderboard)':<52} {markdown:>8.2f}")
    print(f"{'HTML site, median of ' + str(args.repeats):<52} {site:>8.2f}   (each: "
          f"{', '.join(f'{t:.2f}' for t in site_times)}; the first loads the datasets)")
    print(f"{'  CPU seconds, this process + figure workers':<52} {statistics.median(cpu_times):>8.2f}   (each: "
          f"{', '.join(f'{t:.2f}' for t in cpu_times)})")
    for name in phases[0]:
        print(f"{'  ' + name:<52} {statistics.median(p[name] for p in phases):>8.2f}   (first: {phases[0][name]:.2f})")
    print(f"site / Markdown rebuild: {site / markdown:.2f}; {len(files)} files, {size / 1e6:.1f} MB")
    print(f"target: site < {TARGET_SECONDS:.0f} s -> {'ok' if site < TARGET_SECONDS else 'FAIL'}")
    return 0 if site < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
