"""One benchmark run: build and check components, augment the training dialogues, train (the
``crs_bench_train`` stage), test once with the selected weights (``crs_bench_predict``), run the
conversation task when the model speaks or a generator is attached, and write the record.

Stages: ``augment`` -> ``train`` -> ``test`` -> ``conv``. Lifecycle hooks fire at run, stage and epoch
boundaries; the train and predict stages are hooks a plugin can take over (`harness.api.hookspecs`).
"""
from __future__ import annotations

import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from . import config as config_module
from . import conversation as conversation_module
from . import metric_families
from .api.conformance import check, check_recommender, plan_loss
from .boundary import PluginFailure, Suspect, guard, notify, notify_error, one_line
from .api.context import RunContext, RunState
from .api.interfaces import Augmenter, ResponseGenerator
from .data import SETTINGS, Dataset, Split
from .errors import RunError
from .plugin_manager import CORE_PLUGIN, Plugins
from .popularity import TierThresholds, compute_statistics
from .registry import Component, RegistryError
from .requirements import check_compatible, check_loss_effect
from . import run_directory
from .results import RECORD_FILE, SCHEMA_VERSION, read_record, run_id_for, write_run


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"device '{requested}' requested but CUDA is not available")
    if requested != "cpu" and not requested.startswith("cuda"):
        raise RunError(f"device must be auto, cpu or cuda[:i], got '{requested}'")
    return requested


def progress_factory(quiet: bool) -> Callable[..., Any]:
    from tqdm import tqdm

    disable = quiet or not sys.stderr.isatty()
    return lambda **kwargs: tqdm(disable=disable, leave=False, file=sys.stderr, **kwargs)


def lookup(plugins: Plugins, kind: str, name: str) -> Component:
    """A registered component; an unknown name says when a broken or disabled plugin may explain it."""
    registry = plugins.registries.of(kind)
    try:
        return registry.get(name)
    except RegistryError as error:
        source = plugins.broken_source(kind, name)
        if source is None:
            raise
        certain, why = source
        raise RunError(f"{registry.singular} '{name}' is not available: {why}" if certain else f"{error}; {why}") from None


def components_for(plugins: Plugins, config: dict[str, Any]) -> dict[str, Component]:
    """Look every configured component up (unknown names: one line with suggestions) and check params."""
    chosen = {
        "dataset": lookup(plugins, "datasets", config["dataset"]["name"]),
        "model": lookup(plugins, "models", config["model"]["name"]),
        "loss": lookup(plugins, "losses", config["loss"]["name"]),
        "augmenter": lookup(plugins, "augmenters", config["augmenter"]["name"]),
    }
    if config.get("generator") is not None:
        chosen["generator"] = lookup(plugins, "generators", config["generator"]["name"])
    from .resplit import loader_params

    for kind, component in chosen.items():
        params = loader_params(config[kind]["params"]) if kind == "dataset" else config[kind]["params"]
        config_module.validate_params(kind, component.name, component.resolve(), params, skip=1)
    check_compatible(chosen["loss"], chosen["model"], stats_available=True)
    return chosen


def resolve_defaults(registries: Any, config: dict[str, Any]) -> dict[str, Any]:
    """`config` with each component's factory defaults filled in (what the run stores and hashes)."""
    from .api.kinds import KINDS

    registry_of = {kind.singular: kind.registry for kind in KINDS}
    factories = {kind: registries.of(registry_of[kind]).get(config[kind]["name"]).resolve()
                 for kind in config_module.COMPONENT_KINDS if config.get(kind) is not None}
    return config_module.with_defaults(config, factories)


def preflight(plugins: Plugins, config: dict[str, Any],
              cache_dir: Path | None = None) -> tuple[dict[str, Component], dict[str, dict[str, Any]]]:
    """Everything that can be checked without data: component names and params, loss/model compatibility,
    metric families, their parameters and the selection metric. `bench run` calls it for every config of a
    recipe before the first run starts."""
    components = components_for(plugins, config)
    for name in config["metrics"] or ():
        lookup(plugins, "metrics", name)
    families = metric_families.build(plugins.registries, config, cache_dir)
    metric_families.check_select_metric(config["train"]["select_metric"], families["rec"])
    return components, families


def suspects(run: RunState, *kinds: str) -> list[Suspect]:
    """The run's components of `kinds` (with their built objects) as boundary suspects, in that order."""
    built = {"model": run.model, "loss": run.loss, "augmenter": run.augmenter, "generator": run.generator}
    return [Suspect.of(run.components[kind], built.get(kind)) for kind in kinds if kind in run.components]


def call_stage(plugins: Plugins, hook_name: str, run: RunState, stage: str, *, label: str | None = None,
               resumable: bool = False, **kwargs: Any) -> Any:
    """Call a ``firstresult`` stage hook implementation by implementation (last registered first, the
    ``trylast`` built-in at the end), recording which plugin produced the result. A plugin's implementation
    that raises is a `PluginFailure` naming the plugin; inside the built-in one, the run's model and loss
    are the suspects."""
    hook = getattr(plugins.hook, hook_name)
    label = label or stage
    for impl in reversed(hook.get_hookimpls()):
        given = {"run": run, **kwargs}
        arguments = {name: given[name] for name in impl.argnames}  # a subset, as pluggy allows
        if impl.plugin_name == CORE_PLUGIN:
            with guard(label, *suspects(run, "model", "loss"), resumable=resumable):
                result = impl.function(**arguments)
        else:
            try:
                result = impl.function(**arguments)
            except (KeyboardInterrupt, RunError, config_module.ConfigError):
                raise
            except Exception as error:  # noqa: BLE001 - the boundary around a plugin's stage
                origin = plugins.origins.get(impl.plugin_name)
                raise PluginFailure(origin.label() if origin else f"plugin '{impl.plugin_name}'",
                                    f"{label} ({hook_name})", one_line(error), resumable=resumable,
                                    error=error) from error
        if result is not None:
            run.stages[stage] = impl.plugin_name
            return result
    raise RunError(f"no plugin implemented {hook_name} for this run")


def predict(plugins: Plugins, run: RunState, split: Split, settings: tuple[str, ...], *, label: str = "predict (test)",
            resumable: bool = False) -> dict[str, Any]:
    """Ranked lists of `split` through the predict stage, checked to cover exactly its samples."""
    lists = call_stage(plugins, "crs_bench_predict", run, "predict", label=label, resumable=resumable,
                       split=split, settings=settings)
    for setting in settings:
        if setting not in lists:
            raise RunError(f"stage 'predict' ({run.stages.get('predict')}) returned no '{setting}' lists")
        expected = len(split.rec_samples_for(setting))
        if lists[setting].n_samples != expected:
            raise RunError(f"stage 'predict' ({run.stages.get('predict')}) ranked {lists[setting].n_samples} "
                           f"'{setting}' samples of split '{split.name}', which has {expected}")
    return lists


def augment(run: RunState, component: Component, plugins: Plugins, dataset: Dataset, cache_dir: Path,
            thresholds: TierThresholds) -> list[Any]:
    """Add the augmenter's synthetic dialogues to the training split (never valid or test)."""
    from .data import build_samples

    original = dataset.splits["train"]
    ctx = RunContext(dataset, compute_statistics(dataset.num_items, original.dialogues, original.rec_samples,
                                                 thresholds),
                     run.device, run.seed, cache_dir, run.config, plugins.registries)
    with guard("build", Suspect.of(component)):
        built = component.build(ctx, **run.config["augmenter"]["params"])
    run.augmenter = check(built, Augmenter, component.describe())
    with guard("augment", *suspects(run, "augmenter")):
        added = run.augmenter.augment(list(original.dialogues), random.Random(run.seed))
    if any(not d.synthetic for d in added):
        raise RunError(f"{component.describe()} returned dialogues not marked synthetic")
    train = original
    if added:
        train = Split("train", list(original.dialogues) + list(added))
        train.rec_samples, train.conv_samples = build_samples("train", train.dialogues, dataset.dedup_turn_labels)
    run.train_split = train
    run.train_samples = list(train.rec_samples)
    run.stats = compute_statistics(dataset.num_items, train.dialogues, train.rec_samples, thresholds)
    return added


def execute(config: dict[str, Any], plugins: Plugins, *, results_dir: Path, data_dir: Path | None = None,
            cache_dir: Path = Path(".cache"), resume: bool = False, quiet: bool = False,
            validate_only: bool = False) -> dict[str, Any]:
    """Run one resolved config end to end and return the written record (under ``--resume``, a complete
    record of the same config is returned without running). With `validate_only` (a `bench tune` trial)
    the run stops after training: it returns ``{"run_id", "training"}`` with the selected weights' valid
    metrics, and neither touches the test split nor writes a record.

    A run that fails in plugin code (`PluginFailure`) keeps its last epoch checkpoint when the failure is
    resumable (an observer, the test-time stages, a record hook) and otherwise leaves nothing behind: its
    checkpoints, its run directory and the results directories it created are removed."""
    started = time.perf_counter()
    components, families = preflight(plugins, config, cache_dir)
    config = config_module.with_defaults(config, {kind: c.resolve() for kind, c in components.items()})
    digest = config_module.config_hash(config)
    run_id = run_id_for(config, digest)
    run_dir = results_dir / "runs" / run_id
    if resume and run_directory.is_complete(run_dir):
        record = read_record(run_dir / RECORD_FILE)
        print(f"bench: {run_id}: complete, skipped (--resume)", file=sys.stderr)
        return record
    created = [path for path in (results_dir, results_dir / "runs") if not path.exists()]
    run_directory.prepare(run_dir)  # writable, before any data is loaded or any epoch trained
    lock = run_directory.RunLock(run_dir).acquire()
    try:
        run_directory.remove_orphans(run_dir)
        return _execute(config, plugins, components, families, digest, run_id, run_dir, data_dir=data_dir,
                        cache_dir=cache_dir, resume=resume, quiet=quiet, started=started, validate_only=validate_only)
    except PluginFailure as failure:
        if not failure.outcome:
            failure.outcome = run_directory.settle_failure(run_dir, keep=failure.resumable)
        raise
    finally:
        lock.release(tidy=True)
        for path in reversed(created):  # the results directories this run created, when it left them empty
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def _execute(config: dict[str, Any], plugins: Plugins, components: dict[str, Component],
             families: dict[str, dict[str, Any]], digest: str, run_id: str, run_dir: Path, *,
             data_dir: Path | None, cache_dir: Path, resume: bool, quiet: bool, started: float,
             validate_only: bool = False) -> dict[str, Any]:
    from . import evaluation, loading, provenance, record as record_module
    from .seeding import seed_everything

    run = RunState(config=config, config_hash=digest, run_id=run_id, run_dir=run_dir,
                   seed=config["seed"], device=resolve_device(config["device"]), quiet=quiet, resume=resume,
                   components=components, metrics={**families["rec"], **families["conv"]})
    seeds = seed_everything(run.seed)
    code = provenance.process_code_version()  # the checkout as this process loaded it, not as it is at the end
    from .distributed import initialise

    initialise(run.device)  # several processes (--processes, torchrun): join the process group
    try:
        t0 = time.perf_counter()
        with guard("build", Suspect.of(components["dataset"])):
            dataset = loading.load(components["dataset"], config["dataset"]["params"], data_dir, cache_dir,
                                   config["limit"])
        run.timings["load_seconds"] = time.perf_counter() - t0
        run.dataset = dataset

        notify(plugins, "crs_bench_stage_start", "stage hook", run=run, stage="augment")
        t0 = time.perf_counter()
        added = augment(run, components["augmenter"], plugins, dataset, cache_dir, TierThresholds(**config["tiers"]))
        run.timings["augment_seconds"] = time.perf_counter() - t0
        with guard("augment", *suspects(run, "augmenter")):
            augmentation = dict(run.augmenter.statistics())
        notify(plugins, "crs_bench_stage_finish", "stage hook", run=run, stage="augment", summary={
            "added_dialogues": len(added), "train_samples": len(run.train_samples), **augmentation})

        # components see the training split after augmentation
        ctx = RunContext(replace(dataset, splits={**dataset.splits, "train": run.train_split}), run.stats,
                         run.device, run.seed, cache_dir, config, plugins.registries)
        run.context = ctx
        model_component, loss_component = components["model"], components["loss"]
        with guard("build", Suspect.of(model_component)):
            model = model_component.build(ctx, **config["model"]["params"])
        run.model = check_recommender(model, model_component.describe())
        with guard("build", Suspect.of(loss_component)):
            run.loss = loss_component.build(ctx, **config["loss"]["params"])
        run.loss_plan = plan_loss(run.loss, loss_component.requires, loss_component.describe())
        with guard("build", *suspects(run, "model", "loss")):
            if run.model.trainable:
                run.model.to(run.device)
            if run.loss_plan.module is not None:
                run.loss_plan.module.to(run.device)
        if "generator" in components:
            generator = components["generator"]
            with guard("build", Suspect.of(generator)):
                built = generator.build(ctx, **config["generator"]["params"])
            run.generator = check(built, ResponseGenerator, generator.describe())
        metric_ctx = evaluation.metric_context(dataset, run.stats)
        valid_split = dataset.splits["valid"]
        # every family once on placeholder lists of the valid split: a family that cannot compute fails
        # now, in one line, not after training
        metric_families.rehearse(families["rec"], valid_split, metric_ctx)
        run._validate = lambda: evaluation.compute_metrics(
            predict(plugins, run, valid_split, ("standard",), label="predict (valid)"), families["rec"], metric_ctx,
            split="valid")["standard"]
        run._epoch_end = lambda epoch, metrics: notify(plugins, "crs_bench_epoch_end", "epoch hook",
                                                       resumable=True, detail=f"epoch {epoch}", run=run,
                                                       epoch=epoch, metrics=metrics)
        run._progress = progress_factory(quiet)
        notify(plugins, "crs_bench_run_start", "run start hook", run=run)

        notify(plugins, "crs_bench_stage_start", "stage hook", run=run, stage="train")
        t0 = time.perf_counter()
        training_summary = call_stage(plugins, "crs_bench_train", run, "train", label="train step")
        run.timings["train_seconds"] = time.perf_counter() - t0
        check_loss_effect(loss_component, model_component, trained=bool(training_summary.get("trained")),
                          trainable=bool(run.model.trainable), adjusts_scores=run.loss_plan.score_adjuster is not None,
                          default_loss=config_module.DEFAULTS["loss"]["name"])
        notify(plugins, "crs_bench_stage_finish", "stage hook", resumable=True, run=run, stage="train",
               summary=training_summary)
        if validate_only:  # a tuning trial: the test split stays unseen
            return {"run_id": run_id, "training": {**training_summary, "valid_metrics": run.validate()}}

        notify(plugins, "crs_bench_stage_start", "stage hook", resumable=True, run=run, stage="test")
        t0 = time.perf_counter()
        valid_metrics = run.validate()
        lists = predict(plugins, run, dataset.splits["test"], SETTINGS, label="predict (test)", resumable=True)
        metrics = {"rec": evaluation.compute_metrics(lists, families["rec"], metric_ctx, resumable=True)}
        run.timings["test_seconds"] = time.perf_counter() - t0
        notify(plugins, "crs_bench_stage_finish", "stage hook", resumable=True, run=run, stage="test", summary={
            "samples": {s: v.n_samples for s, v in lists.items()}})
        rows = evaluation.sample_rows(lists, dataset.catalogue.ids)
        produced = dict(families["rec"])

        conversation = conversation_module.stage(run, plugins, dataset, families["conv"])
        if conversation is not None:
            metrics["conv"] = {conversation["setting"]: conversation["metrics"]}
            rows += conversation["rows"]
            produced.update(families["conv"])

        run.timings["total_seconds"] = time.perf_counter() - started
        with guard("record (describe)", *suspects(run, "model", "loss", "augmenter", "generator"), resumable=True):
            described = {kind: record_module.component_summary(components[kind], config[kind]["params"], built)
                         for kind, built in (("dataset", None), ("model", run.model), ("loss", run.loss),
                                             ("augmenter", run.augmenter), ("generator", run.generator))
                         if kind in components}
        record = {
            "schema_version": SCHEMA_VERSION,
            "run_id": run_id,
            "config_hash": digest,
            "config": config,
            "seeds": seeds,
            "code": code,
            "packages": provenance.package_versions(),
            "dataset": record_module.dataset_summary(dataset, run),
            "components": described,
            "plugins": plugins.provenance(),
            "environment": provenance.environment(run.device),
            "timings": {k: round(v, 3) for k, v in run.timings.items()},
            "stages": dict(run.stages),
            "training": {**training_summary, "valid_metrics": valid_metrics},
            "augmentation": {"added_dialogues": len(added), **augmentation},
            "tasks": sorted(metrics),
            "metrics": metrics,
            "metric_families": metric_families.identities(produced),
            "ild_features": {"source": "1-hop KG neighbours of each item (docs/protocol.md)",
                             "empty_feature_items": None if metric_ctx.item_neighbours is None else
                             sum(1 for neighbours in metric_ctx.item_neighbours if not neighbours)},
            "artifacts": {},
            "extra": {},
        }
        if plugins.skipped():
            record["plugins_skipped"] = plugins.skipped()  # what an environment with broken plugins ran without
        if conversation is not None:
            record["conversation"] = conversation["summary"]
        record = provenance.redact(record)  # credentials in URLs (an LLM endpoint) never reach a record
        notify(plugins, "crs_bench_record_ready", "record hook", resumable=True, record=record)
        try:
            path = write_run(run.run_dir, record, rows)
        except OSError as error:
            raise RunError(run_directory.write_failure(error, run.run_dir, trained=True)) from None
        from .training import remove_checkpoints

        remove_checkpoints(run.run_dir)
        try:
            notify(plugins, "crs_bench_record_written", "record hook", record=record, path=path)
            run.log(f"wrote {path}")
            notify(plugins, "crs_bench_run_finish", "run finish hook", run=run, record=record)
        except PluginFailure as failure:
            failure.outcome = f"the record was written to {path}"
            raise
        return record
    except BaseException as error:
        notify_error(plugins, run, error)
        raise
