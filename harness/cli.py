"""The ``bench`` command line. Sub-commands import what they need only when they run, so
``bench --help`` and ``bench plugins`` never import torch."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__

def _user_errors() -> tuple[type[BaseException], ...]:
    from .api.conformance import ConformanceError
    from .config import ConfigError
    from .data import DataError
    from .download import DownloadError
    from .errors import RunError
    from .migrations import MigrationError
    from .plugin_manager import PluginError
    from .registry import RegistryError
    from .requirements import RequirementError
    from .results import RecordError

    return (ConfigError, ConformanceError, DataError, DownloadError, MigrationError, PluginError, RegistryError, RecordError,
            RequirementError, RunError, FileNotFoundError)


def _common() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                        help="load an unpackaged plugin (dotted module path or .py file); repeatable")
    parent.add_argument("--results-dir", type=Path, default=Path("results"), help="where records live (default: results)")
    parent.add_argument("--data-dir", default=None, help="dataset directory (default: $CRS_BENCH_DATA)")
    parent.add_argument("--cache-dir", type=Path, default=Path(".cache"), help="processed-data and embedding cache")
    return parent


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="bench", description="Train and evaluate conversational recommenders; rebuild the leaderboard.")
    parser.add_argument("--version", action="version", version=f"crs-bench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", parents=[common], help="train, select on valid, test once, write a record")
    run.add_argument("recipe", nargs="?", type=Path, help="YAML recipe (benchmarks/*.yaml)")
    run.add_argument("--model")
    run.add_argument("--loss")
    run.add_argument("--augmenter")
    run.add_argument("--generator", help="attach a response generator (the conversation task)")
    run.add_argument("--dataset")
    run.add_argument("--seed", type=int)
    run.add_argument("--device", help="auto, cpu or cuda[:i] (default: auto)")
    run.add_argument("--epochs", type=int)
    run.add_argument("--limit", type=int, help="use at most N samples per split (smoke runs)")
    run.add_argument("--conv-limit", type=int, metavar="N",
                     help="conversation task: generate for N test samples (the same subset for every system)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override any setting, e.g. --set train.lr=3e-4 --set model.params.dim=128")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    run.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    run.add_argument("--dry-run", action="store_true", help="print the resolved configs and exit")

    board = commands.add_parser("leaderboard", parents=[common], help="rebuild results/LEADERBOARD.{md,csv,json}")
    board.add_argument("--check", action="store_true", help="exit 1 if the committed leaderboard is stale")
    board.add_argument("--print", dest="print_table", action="store_true", help="print the Markdown leaderboard")
    board.add_argument("--html", type=Path, metavar="DIR",
                       help="also write the HTML report to DIR: sortable tables, a page per run group, figures "
                            "(PNG and SVG); item tiers and contexts come from the datasets when --data-dir or "
                            "$CRS_BENCH_DATA is set")

    migrate = commands.add_parser("migrate", parents=[common],
                                  help="rewrite the records of a results directory at the current schema")
    migrate.add_argument("--check", action="store_true", help="do not write; exit 1 if any record is outdated")
    migrate.add_argument("--fill-defaults", action="store_true",
                         help="fill schema-2 configs with the installed plugins' defaults (only when they are the "
                              "defaults the runs used: the run ids change)")

    listing = commands.add_parser("plugins", parents=[common], help="list registered components and their origins")
    listing.add_argument("--json", action="store_true")

    compare = commands.add_parser("compare", parents=[common], help="paired bootstrap between two finished runs")
    compare.add_argument("run_a", help="run directory (results/runs/...), or a quoted glob matching several "
                                       "(e.g. the seeds of one config: averaged inside each resample)")
    compare.add_argument("run_b", help="the same for side B")
    compare.add_argument("--resamples", type=int, default=1000)
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--json", action="store_true")

    rescore = commands.add_parser("rescore", parents=[common], help="recompute every metric from samples.jsonl.gz")
    rescore.add_argument("runs", type=Path, nargs="+", help="run directories")
    rescore.add_argument("--check", action="store_true", help="do not write; exit 1 if any value changes")

    data = commands.add_parser("data", help="dataset information and downloads")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    info = data_commands.add_parser("info", parents=[common], help="split sizes, sample counts, tiers, KG size, plot")
    info.add_argument("dataset")
    info.add_argument("--plot", type=Path, help="write the popularity plot (PNG) here")
    download = data_commands.add_parser("download", parents=[common], help="fetch an official release, verify SHA-256")
    download.add_argument("dataset", choices=["redial", "inspired"])
    download.add_argument("--to", type=Path, required=True, dest="destination")
    download.add_argument("--base-url", help="mirror to fetch from instead of the official source")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"run": cmd_run, "leaderboard": cmd_leaderboard, "plugins": cmd_plugins, "data": cmd_data,
                "compare": cmd_compare, "rescore": cmd_rescore, "migrate": cmd_migrate}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("bench: interrupted; the last epoch checkpoint is kept: rerun with --resume to continue",
              file=sys.stderr)
        return 130
    except _user_errors() as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2


def _plugins(args: argparse.Namespace):
    from .plugin_manager import load_plugins

    return load_plugins(extra=args.plugin)


def cmd_run(args: argparse.Namespace) -> int:
    from . import config as config_module
    from .loading import data_dir_from
    from .runner import execute, preflight

    plugins = _plugins(args)
    recipe = config_module.load_recipe(args.recipe) if args.recipe else None
    flags = {"model": args.model, "loss": args.loss, "augmenter": args.augmenter, "generator": args.generator,
             "dataset": args.dataset,
             "seed": args.seed, "device": args.device, "train.epochs": args.epochs, "limit": args.limit,
             "conv_limit": args.conv_limit}
    declared = {name for c in plugins.registries.metrics for name in (c.spec.params if c.spec else {})}
    configs = config_module.resolve(recipe, flags, args.overrides, metric_param_names=declared)
    for index, config in enumerate(configs):  # the whole recipe is checked before its first run starts
        components, _ = preflight(plugins, config)
        configs[index] = config_module.with_defaults(config, {k: c.resolve() for k, c in components.items()})
    if args.dry_run:
        print(json.dumps(configs, indent=1))
        return 0
    data_dir = data_dir_from(args.data_dir)
    for config in configs:
        record = execute(config, plugins, results_dir=args.results_dir, data_dir=data_dir,
                         cache_dir=args.cache_dir, resume=args.resume, quiet=args.quiet)
        _print_summary(record, plugins.registries)
    return 0


def _print_summary(record: dict[str, Any], registries: Any) -> None:
    """The run id and, per task and setting, the declared default columns of its metric families."""
    print(record["run_id"])
    for task, settings in record["metrics"].items():
        columns = [column for name in record["metric_families"] if name in registries.metrics
                   for column in (registries.metrics.get(name).spec.columns or ())]
        for setting, values in settings.items():
            shown = "  ".join(f"{k}={values[k]:.4f}" for k in columns if isinstance(values.get(k), float))
            print(f"  {task}/{setting:<8} {shown}")


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .leaderboard import OUTPUT_STEM, outputs, stale_files
    from .results import write_atomic

    plugins = _plugins(args)
    if args.check and args.html:
        print("bench: error: --check writes nothing; run --html without it", file=sys.stderr)
        return 2
    if args.check:
        stale = stale_files(args.results_dir, plugins.registries)
        if stale:
            print("bench: leaderboard is stale (run `bench leaderboard`): " + ", ".join(map(str, stale)),
                  file=sys.stderr)
            return 1
        print("leaderboard is up to date")
        return 0
    prepared: dict[str, Any] = {}
    files = outputs(args.results_dir, plugins.registries, prepared=prepared)
    for path, text in files.items():
        write_atomic(path, text.encode())
    markdown = files[args.results_dir / f"{OUTPUT_STEM}.md"]
    print(markdown if args.print_table else f"wrote {', '.join(str(p) for p in files)}")
    if args.html:
        from .loading import data_dir_from
        from .report import write_site

        index = write_site(args.html, prepared["tables"], prepared["views"], plugins.registries,
                           data_dir_from(args.data_dir), args.cache_dir)
        print(f"site: {index} (open it in a browser)")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    import json as json_module

    from .migrations import migrate_directory
    from .results import RECORD_FILE, SCHEMA_VERSION

    if args.check:
        outdated = [path.parent.name for path in sorted((args.results_dir / "runs").glob(f"*/{RECORD_FILE}"))
                    if json_module.loads(path.read_text()).get("schema_version") != SCHEMA_VERSION]
        for name in outdated:
            print(f"{name}: schema is older than {SCHEMA_VERSION}")
        return 1 if outdated else 0
    moved = migrate_directory(args.results_dir, _plugins(args).registries if args.fill_defaults else None)
    for old, new in moved:
        print(f"{old} -> {new}" if old != new else f"{old}: migrated")
    print(f"{len(moved)} record(s) migrated to schema {SCHEMA_VERSION}; run `bench leaderboard` next")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from .registry import KINDS

    plugins = _plugins(args)
    components = [component.as_dict() for component in plugins.registries.all()]
    if args.json:
        print(json.dumps(components, indent=1))
        return 0
    for kind in KINDS:
        print(f"{kind}:")
        for component in (c for c in components if c["kind"] == kind):
            origin = component["origin"] or {}
            source = f"{origin.get('plugin')} [{origin.get('source')}"
            source += f" {origin.get('distribution')} {origin.get('version')}]" if origin.get("distribution") else "]"
            requires = f" (requires {', '.join(component['requires'])})" if component["requires"] else ""
            print(f"  {component['name']:<20} {component['description']}{requires}  <- {source}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .loading import data_dir_from
    from .stored_runs import compare, expand_runs, open_run, render_comparison

    plugins = _plugins(args)
    data_dir = data_dir_from(args.data_dir)
    sides = [[open_run(path, plugins, data_dir, args.cache_dir) for path in expand_runs(pattern)]
             for pattern in (args.run_a, args.run_b)]
    result = compare(*sides, plugins, resamples=args.resamples, seed=args.seed)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        labels = [", ".join(run.record["run_id"] for run in side) for side in sides]
        print(render_comparison(result, *labels))
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    from .loading import data_dir_from
    from .stored_runs import open_run, rescore

    plugins = _plugins(args)
    changed = False
    for path in args.runs:
        run = open_run(path, plugins, data_dir_from(args.data_dir), args.cache_dir)
        _, differences = rescore(run, plugins, write=not args.check)
        changed |= bool(differences)
        status = "identical" if not differences else ("differs" if args.check else "updated")
        print(f"{run.record['run_id']}: {status}")
        for line in differences:
            print(f"  {line}")
    return 1 if args.check and changed else 0


def cmd_data(args: argparse.Namespace) -> int:
    if args.data_command == "download":
        from .download import download

        for path in download(args.dataset, args.destination, base_url=args.base_url):
            print(path)
        return 0
    from .data_info import describe, plot_popularity, render
    from .loading import data_dir_from, load
    from .popularity import compute_statistics

    plugins = _plugins(args)
    component = plugins.registries.datasets.get(args.dataset)
    dataset = load(component, {}, data_dir_from(args.data_dir), args.cache_dir)
    train = dataset.splits["train"]
    stats = compute_statistics(dataset.num_items, train.dialogues, train.rec_samples)
    print(render(describe(dataset, stats)))
    if args.plot:
        plot_popularity(stats, args.plot)
        print(f"popularity plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
