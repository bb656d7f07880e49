"""Every hook specification is documented and exercised here by a test named test_<hook name>."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from harness import hookimpl
from harness.api import KINDS, hookspecs
from harness.config import resolve
from harness.plugin_manager import load_plugins
from harness.runner import execute

HOOK_NAMES = sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
                    if name.startswith("crs_bench_"))


def test_every_hook_is_documented_and_tested():
    assert len(HOOK_NAMES) == 19  # 9 registration (one per component kind) + 2 stage + 8 lifecycle hooks
    assert {kind.hook for kind in KINDS} | set(hookspecs.STAGE_HOOKS) <= set(HOOK_NAMES)
    for name in HOOK_NAMES:
        spec = getattr(hookspecs, name)
        assert spec.__doc__ and len(spec.__doc__.strip()) > 20, f"hook {name} has no docstring"
        assert callable(globals().get(f"test_{name}")), f"hook {name} has no test named test_{name}"


class Recorder:
    """A plugin that records every lifecycle call and registers one component of each kind."""

    def __init__(self):
        self.calls: list[tuple] = []

    @hookimpl
    def crs_bench_run_start(self, run):
        self.calls.append(("run_start", run.run_id, run.model is not None))

    @hookimpl
    def crs_bench_run_finish(self, run, record):
        self.calls.append(("run_finish", record["run_id"]))

    @hookimpl
    def crs_bench_run_error(self, run, error):
        self.calls.append(("run_error", type(error).__name__))

    @hookimpl
    def crs_bench_stage_start(self, run, stage):
        self.calls.append(("stage_start", stage))

    @hookimpl
    def crs_bench_stage_finish(self, run, stage, summary):
        self.calls.append(("stage_finish", stage, dict(summary)))

    @hookimpl
    def crs_bench_epoch_end(self, run, epoch, metrics):
        self.calls.append(("epoch_end", epoch, metrics["valid"]["recall@10"]))

    @hookimpl
    def crs_bench_record_ready(self, record):
        record["extra"]["recorder"] = "saw the record"
        self.calls.append(("record_ready", "metrics" in record))

    @hookimpl
    def crs_bench_record_written(self, record, path):
        self.calls.append(("record_written", Path(path).name, Path(path).is_file()))

    def names(self):
        return [call[0] for call in self.calls]


SMALL = ["dataset.params.train_dialogues=120", "dataset.params.valid_dialogues=30",
         "dataset.params.test_dialogues=30", "dataset.params.num_items=80"]


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory):
    plugins = load_plugins(autoload=False)
    recorder = Recorder()
    plugins.manager.register(recorder, name="recorder")
    config = resolve(flags={"model": "linear-context", "train.epochs": 2}, overrides=SMALL)[0]
    tmp = tmp_path_factory.mktemp("hooks")
    record = execute(config, plugins, results_dir=tmp / "results", cache_dir=tmp / "cache", quiet=True)
    return recorder, record


def test_crs_bench_run_start(recorded_run):
    recorder, record = recorded_run
    assert ("run_start", record["run_id"], True) in recorder.calls
    assert recorder.names().index("run_start") < recorder.names().index("epoch_end")


def test_crs_bench_run_finish(recorded_run):
    recorder, record = recorded_run
    assert recorder.calls[-1] == ("run_finish", record["run_id"])


def test_crs_bench_run_error(tmp_path):
    plugins = load_plugins(autoload=False)
    recorder = Recorder()

    class Failing:
        @hookimpl
        def crs_bench_epoch_end(self, run, epoch, metrics):
            raise RuntimeError("observer failed")

    plugins.manager.register(recorder, name="recorder")
    plugins.manager.register(Failing(), name="failing")
    config = resolve(flags={"model": "linear-context", "train.epochs": 2}, overrides=SMALL)[0]
    with pytest.raises(RuntimeError, match="observer failed"):
        execute(config, plugins, results_dir=tmp_path / "r", cache_dir=tmp_path / "c", quiet=True)
    assert recorder.calls[-1] == ("run_error", "PluginFailure")
    assert not list((tmp_path / "r").glob("runs/*/record.json"))


def test_crs_bench_stage_start(recorded_run):
    recorder, _ = recorded_run
    assert [c[1] for c in recorder.calls if c[0] == "stage_start"] == ["augment", "train", "test"]


def test_crs_bench_stage_finish(recorded_run):
    recorder, _ = recorded_run
    finished = {c[1]: c[2] for c in recorder.calls if c[0] == "stage_finish"}
    assert finished["augment"]["added_dialogues"] == 0
    assert finished["train"]["epochs_run"] == 2
    assert finished["test"]["samples"]["standard"] > finished["test"]["samples"]["novel"] > 0


def test_crs_bench_epoch_end(recorded_run):
    recorder, record = recorded_run
    epochs = [c for c in recorder.calls if c[0] == "epoch_end"]
    assert [c[1] for c in epochs] == [1, 2]
    history = record["training"]["history"]
    assert [h["valid_recall@10"] for h in history] == [c[2] for c in epochs]


def test_crs_bench_record_ready(recorded_run):
    recorder, record = recorded_run
    assert ("record_ready", True) in recorder.calls
    assert record["extra"]["recorder"] == "saw the record"


def test_crs_bench_record_written(recorded_run):
    recorder, _ = recorded_run
    assert ("record_written", "record.json", True) in recorder.calls
    assert recorder.names().index("record_ready") < recorder.names().index("record_written")


def _check_registration(kind, tmp_path, extra=""):
    hook_name = hookspecs.REGISTRATION_HOOKS[kind]
    source = f"from harness.api import hookimpl, MetricSpec, HIGHER\n\n@hookimpl\ndef {hook_name}(registry):\n" \
             f"    registry.add('my-{kind}', lambda *a, **k: None, 'A test {kind}.', requires={{'item_counts'}}{extra})\n"
    path = tmp_path / f"my_{kind}_plugin.py"
    path.write_text(source)
    plugins = load_plugins(extra=[str(path)], autoload=False)
    component = plugins.registries.of(kind).get(f"my-{kind}")
    assert component.origin.source == "path" and component.origin.plugin == str(path)
    assert component.requires == frozenset({"item_counts"})
    assert component.description == f"A test {kind}."


def test_crs_bench_register_datasets(tmp_path):
    _check_registration("datasets", tmp_path)


def test_crs_bench_register_models(tmp_path):
    _check_registration("models", tmp_path)


def test_crs_bench_register_losses(tmp_path):
    _check_registration("losses", tmp_path)


def test_crs_bench_register_augmenters(tmp_path):
    _check_registration("augmenters", tmp_path)


def test_crs_bench_register_metrics(tmp_path):
    _check_registration("metrics", tmp_path, extra=", spec=MetricSpec('rec', {'my_key@*': HIGHER})")


def test_crs_bench_register_retrievers(tmp_path):
    _check_registration("retrievers", tmp_path)


def test_crs_bench_register_generators(tmp_path):
    _check_registration("generators", tmp_path)


def test_crs_bench_register_llm_backends(tmp_path):
    _check_registration("llm_backends", tmp_path)


def test_crs_bench_register_executors(tmp_path):
    _check_registration("executors", tmp_path)


COUNTING_PLUGIN = '''
"""A model that trains and predicts its own way: it counts training labels and ranks without the built-in
scorer (its make_batch/scores refuse to be used)."""
import numpy as np

from harness.api import LIST_LENGTH, context_representatives, hookimpl, lists_from_tops


class CountingModel:
    trainable = False  # the built-in trainer must not touch it; this plugin's train stage counts

    def __init__(self, ctx):
        self.num_items = ctx.dataset.num_items
        self.counts = None

    def make_batch(self, split, samples):
        raise AssertionError("the built-in predict stage must not be used for the counting model")

    def scores(self, batch):
        raise AssertionError("the built-in predict stage must not be used for the counting model")


@hookimpl
def crs_bench_register_models(registry):
    registry.add("counting", CountingModel, "Counts training labels in its own train stage.")


@hookimpl
def crs_bench_train(run):
    if not isinstance(run.model, CountingModel):
        return None
    run.model.counts = np.bincount([s.label for s in run.train_samples], minlength=run.model.num_items)
    return {"trained": True, "method": "label counts", "valid_recall@10": run.validate()["recall@10"]}


@hookimpl
def crs_bench_predict(run, split, settings):
    if not isinstance(run.model, CountingModel):
        return None
    order = np.argsort(-run.model.counts, kind="stable")  # ties by ascending item index
    contexts, _ = context_representatives(split.rec_samples)
    tops = {"standard": np.tile(order[:LIST_LENGTH], (len(contexts), 1))}
    if "novel" in settings:
        tops["novel"] = np.array([[i for i in order if i not in set(c.context_items)][:LIST_LENGTH]
                                  for c in contexts]).reshape(len(contexts), LIST_LENGTH)
    return lists_from_tops(split.rec_samples, {s: tops[s] for s in settings})
'''


@pytest.fixture(scope="module")
def counting_runs(tmp_path_factory):
    """`bench run` of the counting plugin, and of the built-in popularity ranker by label counts."""
    import json

    from harness.cli import main

    tmp = tmp_path_factory.mktemp("stages")
    plugin = tmp / "counting_plugin.py"
    plugin.write_text(COUNTING_PLUGIN)
    common = ["--results-dir", str(tmp / "results"), "--cache-dir", str(tmp / "cache"), "--quiet",
              "--plugin", str(plugin), *[arg for item in SMALL for arg in ("--set", item)]]
    assert main(["run", "--model", "counting", *common]) == 0
    assert main(["run", "--model", "popularity", "--set", "model.params.counts=label_counts", *common]) == 0
    records = {json.loads(p.read_text())["config"]["model"]["name"]: json.loads(p.read_text())
               for p in (tmp / "results" / "runs").glob("*/record.json")}
    return records, str(plugin)


def test_crs_bench_train(counting_runs):
    records, plugin = counting_runs
    counting = records["counting"]
    assert counting["stages"]["train"] == plugin
    assert counting["training"]["trained"] is True and counting["training"]["method"] == "label counts"
    assert records["popularity"]["stages"]["train"] == "harness.stages"  # other models keep the built-in
    # validation went through the plugin's own predict stage
    assert counting["training"]["valid_recall@10"] == counting["training"]["valid_metrics"]["recall@10"]


def test_crs_bench_predict(counting_runs):
    records, plugin = counting_runs
    counting, popularity = records["counting"], records["popularity"]
    assert counting["stages"]["predict"] == plugin and popularity["stages"]["predict"] == "harness.stages"
    # ranking by training-label counts, ties by ascending id: exactly the built-in label-count popularity
    assert counting["metrics"] == popularity["metrics"]
    assert counting["metrics"]["rec"]["novel"]["n_samples"] < counting["metrics"]["rec"]["standard"]["n_samples"]
