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
    parent.add_argument("--disable-plugin", action="append", default=[], metavar="NAME",
                        help="do not load this plugin (its plugin or distribution name, as `bench plugins` shows it); "
                             "repeatable; also $CRS_BENCH_DISABLE_PLUGINS=a,b")
    parent.add_argument("-p", dest="plugin_options", action="append", default=[], metavar="NAME|no:NAME",
                        help="pytest-style: '-p no:NAME' disables a plugin, '-p MODULE' loads one")
    parent.add_argument("--traceback", action="store_true",
                        help="on an error, print the full Python traceback before the one-line message")
    parent.add_argument("--results-dir", type=Path, default=Path("results"), help="where records live (default: results)")
    parent.add_argument("--data-dir", default=None, help="dataset directory (default: $CRS_BENCH_DATA)")
    parent.add_argument("--cache-dir", type=Path, default=Path(".cache"), help="processed-data and embedding cache")
    return parent


RUN_EPILOG = ("Components and their parameters: `bench plugins` lists every registered component, "
              "`bench plugins NAME` shows one with its parameters, types and defaults; set them with "
              "--set model.params.KEY=VALUE.")


def build_parser(components: dict[str, list[str]] | None = None) -> argparse.ArgumentParser:
    """The parser; `components` (kind -> names, only computed for ``bench run --help``) adds the choices."""
    from .config import DEFAULTS

    common = _common()
    parser = argparse.ArgumentParser(
        prog="bench", description="Train and evaluate conversational recommenders; rebuild the leaderboard.")
    parser.add_argument("--version", action="version", version=f"crs-bench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def choices(kind: str) -> str:
        names = (components or {}).get(kind)
        return f"; one of: {', '.join(names)}" if names else ""

    train = DEFAULTS["train"]
    epilog = RUN_EPILOG
    if components is not None and components.get("_broken"):
        epilog += " Skipped (broken) plugins: " + ", ".join(components["_broken"]) + "."
    run = commands.add_parser("run", parents=[common], help="train, select on valid, test once, write a record",
                              epilog=epilog)
    run.add_argument("recipe", nargs="?", type=Path, help="YAML recipe (benchmarks/*.yaml)")
    run.add_argument("--model", help=f"recommender (default: {DEFAULTS['model']['name']}){choices('models')}")
    run.add_argument("--loss", help=f"training loss (default: {DEFAULTS['loss']['name']}){choices('losses')}")
    run.add_argument("--augmenter", help=f"training-data augmenter (default: {DEFAULTS['augmenter']['name']})"
                                         f"{choices('augmenters')}")
    run.add_argument("--generator", help=f"attach a response generator (the conversation task; default: none)"
                                         f"{choices('generators')}")
    run.add_argument("--dataset", help=f"dataset (default: {DEFAULTS['dataset']['name']}){choices('datasets')}")
    run.add_argument("--seed", type=int, help=f"random seed (default: {DEFAULTS['seed']})")
    run.add_argument("--device", help="auto, cpu or cuda[:i] (default: auto)")
    run.add_argument("--epochs", type=int, help=f"training epochs (default: {train['epochs']}; early stopping with "
                                                f"patience {train['patience']} on {train['select_metric']})")
    run.add_argument("--limit", type=int, help="use at most N samples per split (smoke runs; default: all)")
    run.add_argument("--conv-limit", type=int, metavar="N",
                     help="conversation task: generate for N test samples (the same subset for every system)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override any setting, e.g. --set train.lr=3e-4 --set model.params.dim=128 (defaults: "
                          + ", ".join(f"train.{k}={v}" for k, v in train.items()) + "; metrics=all registered)")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    run.add_argument("--executor", default=None, metavar="NAME",
                     help="run the grid's cells through this executor: local (default, one after another), ray, "
                          f"slurm{choices('executors')}; remote executors skip cells whose complete record exists")
    run.add_argument("--executor-option", dest="executor_options", action="append", default=[], metavar="KEY=VALUE",
                     help="an executor parameter, e.g. workers=2 or partition=gpu (`bench plugins ray` lists them)")
    run.add_argument("--processes", type=int, default=1, metavar="N",
                     help="data-parallel training and evaluation in N processes on this machine (gloo on CPU, "
                          "NCCL on CUDA); rank 0 writes the record (accelerate launch / torchrun of bench work too)")
    run.add_argument("--keep-going", action="store_true",
                     help="a failing cell does not stop the others; exit 2 with a summary of the failed cells")
    run.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    run.add_argument("--dry-run", action="store_true",
                     help="print the resolved configs (and each component's parameters with defaults) and exit")

    tune = commands.add_parser("tune", parents=[common], help="Optuna search on the valid split (the recipe's "
                               "'search' section), then the best trial's config tested once")
    tune.add_argument("recipe", type=Path, help="a recipe with a 'search' section (benchmarks/*_tune_*.yaml)")
    tune.add_argument("--trials", type=int, help="trials this process runs (default: search.trials; 0: only "
                                                  "evaluate the best trial of the stored study)")
    tune.add_argument("--storage", type=Path, help="the study's JournalStorage file (default: "
                                                    "<cache-dir>/studies/<study>.journal); share it between workers")
    tune.add_argument("--no-final", dest="final", action="store_false",
                      help="run trials only (a worker); a later `bench tune --trials 0` tests the best once")
    tune.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a setting of every trial")
    tune.add_argument("--quiet", action="store_true", help="no progress bars or log lines")

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

    listing = commands.add_parser("plugins", parents=[common], help="list registered components and their origins; "
                                  "NAME: one component's description, parameters, requirements and capabilities")
    listing.add_argument("name", nargs="?", help="a component name (models, losses, metrics, ...)")
    listing.add_argument("--kind", help="only this kind (models, losses, augmenters, metrics, datasets, ...)")
    listing.add_argument("--json", action="store_true", help="machine-readable, parameters included")

    compare = commands.add_parser("compare", parents=[common], help="paired bootstrap between two finished runs")
    compare.add_argument("run_a", help="run directory (results/runs/...), or a quoted glob matching several "
                                       "(e.g. the seeds of one config: averaged inside each resample)")
    compare.add_argument("run_b", help="the same for side B")
    compare.add_argument("--resamples", type=int, default=1000)
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--json", action="store_true")

    samples = commands.add_parser("samples", parents=[common],
                                  help="stored conversation outputs of runs for samples drawn by a seed")
    samples.add_argument("runs", nargs="+", help="run directories (or quoted globs); the same samples for each")
    samples.add_argument("--n", type=int, default=5, help="samples to draw (default 5)")
    samples.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    samples.add_argument("--turns", type=int, default=4, help="context turns shown (default 4)")

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
    argv = list(sys.argv[1:] if argv is None else argv)
    components = _run_help_components() if argv[:1] == ["run"] and ("-h" in argv or "--help" in argv) else None
    parser = build_parser(components)
    args = parser.parse_args(argv)
    args.argv = argv
    handlers = {"run": cmd_run, "tune": cmd_tune, "leaderboard": cmd_leaderboard, "plugins": cmd_plugins, "data": cmd_data,
                "compare": cmd_compare, "rescore": cmd_rescore, "migrate": cmd_migrate, "samples": cmd_samples}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("bench: interrupted; the last epoch checkpoint is kept: rerun with --resume to continue",
              file=sys.stderr)
        return 130
    except _user_errors() as error:
        if getattr(args, "traceback", False):
            import traceback

            traceback.print_exception(error)
        print(f"bench: error: {error}", file=sys.stderr)
        return 2


def _run_help_components() -> dict[str, list[str]] | None:
    """Registered names per kind for ``bench run --help`` (broken plugins are skipped, never fatal here)."""
    from .plugin_manager import PluginError, load_plugins

    try:
        plugins = load_plugins(tolerate=True)
    except PluginError:
        return None
    names: dict[str, list[str]] = {kind: plugins.registries.of(kind).names() for kind in plugins.registries.kinds()}
    names["_broken"] = sorted(plugins.broken)
    return names


def _plugin_options(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(--plugin values, disabled names) from --plugin, --disable-plugin and pytest-style -p."""
    options = getattr(args, "plugin_options", [])
    extra = [*args.plugin, *[value for value in options if not value.startswith("no:")]]
    disable = [*getattr(args, "disable_plugin", []), *[value[3:] for value in options if value.startswith("no:")]]
    return extra, disable


def _plugins(args: argparse.Namespace):
    """Every command's plugins: installed plugins that fail to load are skipped with one warning line each
    (`run` then refuses only a config that needs one of their components); ``--plugin`` failures stop."""
    from .plugin_manager import load_plugins

    extra, disable = _plugin_options(args)
    plugins = load_plugins(extra=extra, disable=disable, tolerate=True)
    for line in plugins.notices:
        print(f"bench: note: {line}", file=sys.stderr)
    for line in plugins.warnings():
        print(f"bench: warning: {line}", file=sys.stderr)
    return plugins


def cmd_run(args: argparse.Namespace) -> int:
    from . import config as config_module
    from .loading import data_dir_from
    from .runner import preflight

    if args.processes != 1 or _world_size() > 1:
        launched = _data_parallel(args)
        if launched is not None:
            return launched
    plugins = _plugins(args)
    recipe = config_module.load_recipe(args.recipe) if args.recipe else None
    flags = {"model": args.model, "loss": args.loss, "augmenter": args.augmenter, "generator": args.generator,
             "dataset": args.dataset,
             "seed": args.seed, "device": args.device, "train.epochs": args.epochs, "limit": args.limit,
             "conv_limit": args.conv_limit}
    declared = {name for c in plugins.registries.metrics for name in (c.spec.params if c.spec else {})}
    configs = config_module.resolve(recipe, flags, args.overrides, metric_param_names=declared)
    checked = [preflight(plugins, config, args.cache_dir) for config in configs]  # the whole recipe first
    configs = [config_module.with_defaults(config, {kind: c.resolve() for kind, c in components.items()})
               for config, (components, _) in zip(configs, checked)]  # what each run stores and hashes
    if args.dry_run:
        print(json.dumps(configs, indent=1))
        _print_resolved(configs, checked)
        return 0
    from . import executors

    executor = _executor(plugins, args.executor, args.executor_options)
    extra, disable = _plugin_options(args)
    job = executors.job_for(extra, disable, data_dir_from(args.data_dir), args.cache_dir,
                            results_dir=None if executor.remote else args.results_dir, resume=args.resume,
                            quiet=args.quiet or executor.remote, catch=args.keep_going or executor.remote)
    outcome = executors.run_grid(executor, executors.cells_for(configs), job, args.results_dir,
                                 keep_going=args.keep_going, plugins=plugins,
                                 on_record=lambda record: _world_rank() == 0 and _print_summary(record, plugins.registries))
    if outcome.failures:
        print(f"bench: error: {outcome.summary()}", file=sys.stderr)
        return 2
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_recipe
    from .loading import data_dir_from
    from .tune import tune

    if args.trials is not None and args.trials < 0:
        raise ConfigError(f"--trials must be a non-negative integer, got {args.trials}")
    plugins = _plugins(args)
    record = tune(load_recipe(args.recipe), plugins, flags={}, overrides=args.overrides, trials=args.trials,
                  results_dir=args.results_dir, data_dir=data_dir_from(args.data_dir), cache_dir=args.cache_dir,
                  storage=args.storage, final=args.final, quiet=args.quiet)
    if record is not None:
        tuning = record["extra"]["tuning"]
        print(f"best trial {tuning['best_trial']} of {len(tuning['trials'])}: {tuning['metric']}="
              f"{tuning['best_value']:.4f} (valid) {tuning['best_params']}")
        _print_summary(record, plugins.registries)
    return 0


def _world_size() -> int:
    from .distributed import current

    return current().size


def _world_rank() -> int:
    from .distributed import current

    return current().rank


def _data_parallel(args: argparse.Namespace) -> int | None:
    """`--processes N`: launch N ranks of this command and return their status; inside a rank (launched here,
    by `accelerate launch` or by torchrun), check the options and point ranks > 0 at a scratch results
    directory, then return None to run."""
    import tempfile

    from .config import ConfigError
    from .distributed import current, launch

    if args.processes < 1:
        raise ConfigError(f"--processes must be a positive integer, got {args.processes}")
    if args.resume or (args.executor or "local") != "local":
        raise ConfigError("several processes train one run at a time: --resume and --executor are not supported "
                          "with them")
    world = current()
    if world.size == 1:
        argv = [a for i, a in enumerate(args.argv) if a != "--processes" and not a.startswith("--processes=")
                and not (i > 0 and args.argv[i - 1] == "--processes")]
        return launch(argv, args.processes)
    if not world.main:
        import atexit
        import shutil

        args.results_dir = Path(tempfile.mkdtemp(prefix=f"crs-bench-rank{world.rank}-"))
        atexit.register(shutil.rmtree, args.results_dir, ignore_errors=True)
        args.quiet = True
    return None


def _executor(plugins: Any, name: str | None, options: list[str]) -> Any:
    """The named executor built with its ``--executor-option`` values, checked against its interface."""
    from .api.conformance import check
    from .api.interfaces import Executor
    from .config import ConfigError, parse_override, validate_params
    from .executors import DEFAULT_EXECUTOR
    from .runner import lookup

    component = lookup(plugins, "executors", name or DEFAULT_EXECUTOR)
    params = dict(parse_override(text) for text in options)
    validate_params("executor", component.name, component.resolve(), params, skip=0)
    try:
        built = component.build(**params)
    except ValueError as error:  # a parameter out of range: the executor's own one-line message
        raise ConfigError(f"--executor-option: {error}") from None
    return check(built, Executor, component.describe())


def _print_resolved(configs: list[dict[str, Any]], checked: list[tuple[dict[str, Any], Any]]) -> None:
    """Each config's components with the parameters they will be built with, defaults included, as the run
    stores and hashes them, plus the metric families' parameters. On stderr, so stdout stays JSON."""
    from .introspection import resolved

    print("resolved parameters (factory defaults filled in, as the runs store and hash them):", file=sys.stderr)
    for position, (config, (components, families)) in enumerate(zip(configs, checked), start=1):
        print(f"  config {position} (seed {config['seed']}):", file=sys.stderr)
        for kind, component in components.items():
            values = resolved(component, config[kind]["params"])
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items()) or "-"
            print(f"    {kind:<9} {component.name}: {shown}", file=sys.stderr)
        for task in ("rec", "conv"):
            for name, family in families[task].items():
                shown = ", ".join(f"{k}={v!r}" for k, v in family.params.items()) or "-"
                print(f"    metric    {name}: {shown}", file=sys.stderr)


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
    from .introspection import describe
    from .registry import KINDS

    plugins = _plugins(args)
    registries = plugins.registries
    if args.kind is not None and args.kind not in KINDS:
        from .registry import RegistryError

        raise RegistryError(f"unknown component kind '{args.kind}': one of {', '.join(KINDS)}")
    kinds = [args.kind] if args.kind else list(KINDS)
    if args.name is not None:
        found = [registries.of(kind).get(args.name) for kind in kinds if args.name in registries.of(kind)]
        if not found:
            _unknown_component(plugins, kinds, args.name)
        described = [describe(component) for component in found]
        if args.json:
            print(json.dumps(described[0] if len(described) == 1 else described, indent=1))
        else:
            print("\n\n".join(_render_component(info) for info in described))
        return 0
    components = [describe(c) if args.json else c.as_dict() for kind in kinds for c in registries.of(kind)]
    if args.json:
        print(json.dumps(components, indent=1))
        return 0
    for kind in kinds:
        print(f"{kind}:")
        for component in (c for c in components if c["kind"] == kind):
            origin = component["origin"] or {}
            source = f"{origin.get('plugin')} [{origin.get('source')}"
            source += f" {origin.get('distribution')} {origin.get('version')}]" if origin.get("distribution") else "]"
            requires = f" (requires {', '.join(component['requires'])})" if component["requires"] else ""
            print(f"  {component['name']:<20} {component['description']}{requires}  <- {source}")
    for broken in plugins.broken.values():
        print(f"skipped: {broken.message()}")
    if plugins.disabled:
        print(f"disabled: {', '.join(plugins.disabled)}")
    return 0


def _unknown_component(plugins: Any, kinds: list[str], name: str) -> None:
    import difflib

    from .registry import RegistryError

    names = sorted({c.name for kind in kinds for c in plugins.registries.of(kind)})
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = ("did you mean " + " or ".join(f"'{c}'" for c in close) + "?") if close else "`bench plugins` lists them"
    why = next((plugins.broken_source(kind, name)[1] for kind in kinds if plugins.broken_source(kind, name)), None)
    raise RegistryError(f"no component named '{name}': {hint}" + (f"; {why}" if why else ""))


def _render_component(info: dict[str, Any]) -> str:
    origin = info["origin"] or {}
    where = f"{origin.get('source')}:{origin.get('plugin')}"
    if origin.get("distribution"):
        where += f" ({origin['distribution']} {origin['version']})"
    from .api.kinds import kind_of

    singular = kind_of(info["kind"]).singular
    lines = [f"{singular} '{info['name']}' (version {info['version']})",
             f"  {info['description']}",
             f"  origin:     {where}",
             f"  factory:    {info['factory']}  [{info['signature']}; implements {info['interface']}]",
             "  parameters:" + ("" if info["params"] else " none")]
    for param in info["params"]:
        if param["name"].startswith("**"):
            lines.append("    **kwargs   (any further keyword is passed on unchecked)")
            continue
        kind = param["type"] or "any"
        default = "required" if param["required"] else f"default {param['default']!r}"
        help_text = f"  {param['help']}" if param.get("help") else ""
        lines.append(f"    {param['name']}: {kind} ({default}){help_text}")
    lines.append(f"  requires:   {', '.join(info['requires']) or '-'}")
    lines.append(f"  provides:   {', '.join(info['provides']) or '-'}")
    if "metric" in info:
        metric = info["metric"]
        lines.append(f"  task:       {metric['task']}")
        lines.append("  keys:       " + ", ".join(f"{k} ({d})" for k, d in metric["keys"].items()))
        lines.append(f"  columns:    {', '.join(metric['columns']) or '-'}")
    kind = info["kind"]
    if kind in ("models", "losses", "augmenters", "datasets", "generators"):
        lines.append(f"  set with:   --{singular} {info['name']} --set {singular}.params.KEY=VALUE")
    elif kind == "metrics":
        lines.append(f"  set with:   --set 'metrics=[..., {info['name']}]' --set metric_params.KEY=VALUE")
    elif kind == "executors":
        lines.append(f"  set with:   bench run RECIPE --executor {info['name']} --executor-option KEY=VALUE")
    return "\n".join(lines)


def cmd_compare(args: argparse.Namespace) -> int:
    from .loading import data_dir_from
    from .stored_runs import compare, expand_runs, open_run, render_comparison

    plugins = _plugins(args)
    data_dir = data_dir_from(args.data_dir)
    sides = [[open_run(path, plugins, data_dir, args.cache_dir) for path in expand_runs(pattern)]
             for pattern in (args.run_a, args.run_b)]
    notes: list[str] = []
    result = compare(*sides, plugins, resamples=args.resamples, seed=args.seed, notes=notes)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        labels = [", ".join(run.record["run_id"] for run in side) for side in sides]
        print(render_comparison(result, *labels, notes=notes))
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    from .loading import data_dir_from
    from .sample_view import render_samples
    from .stored_runs import expand_runs, open_run

    plugins = _plugins(args)
    data_dir = data_dir_from(args.data_dir)
    runs = [open_run(path, plugins, data_dir, args.cache_dir) for pattern in args.runs for path in expand_runs(pattern)]
    print(render_samples(runs, n=args.n, seed=args.seed, turns=args.turns))
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
