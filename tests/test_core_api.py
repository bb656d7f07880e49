"""The core's contracts (issue 11): plugins use harness.api only, metric families declare themselves, a
family installed after runs exist adds a column without splitting a table, and a conversation metric on a
toy generator's output lands in a `conv` table."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from harness.api import hookimpl

REPO = Path(__file__).resolve().parents[1]
# what a plugin may import from the harness: the API and the documented helpers (docs/plugins.md)
DOCUMENTED = {"harness.api", "harness.data", "harness.ranking", "harness.significance", "harness.popularity",
              "harness.dataset_cache", "harness.training", "harness.seeding", "harness.conversation"}


def harness_imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "harness":
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names if alias.name.split(".")[0] == "harness"}
    return modules


def test_plugins_import_only_the_api_and_documented_helpers():
    offenders = {str(path.relative_to(REPO)): sorted(harness_imports(path) - DOCUMENTED)
                 for path in sorted((REPO / "plugins").rglob("*.py")) if harness_imports(path) - DOCUMENTED}
    offenders = {k: v for k, v in offenders.items() if not k.startswith("plugins/losses/_testing")}
    assert offenders == {}, "plugins must import harness.api (or a documented helper), not core internals"


def test_runner_and_trainer_probe_no_plugin_object():
    for module in ("harness/runner.py", "harness/training.py"):
        text = (REPO / module).read_text()
        probes = [line for line in text.splitlines() if "hasattr(" in line or "getattr(run." in line
                  or "getattr(loss" in line or "getattr(model" in line]
        assert probes == [], f"{module}: {probes}"


def test_a_component_lacking_its_interface_is_named_at_build_time(run_bench, tmp_path):
    plugin = tmp_path / "broken_model.py"
    plugin.write_text("from harness.api import hookimpl\n\nclass NoScores:\n    trainable = False\n"
                      "    def __init__(self, ctx):\n        pass\n    def make_batch(self, split, samples):\n"
                      "        return samples\n\n@hookimpl\ndef crs_bench_register_models(registry):\n"
                      "    registry.add('no-scores', NoScores, 'Lacks scores().')\n")
    code, _, err = run_bench("run", "--model", "no-scores", "--plugin", str(plugin), "--quiet",
                             "--set", "dataset.params.num_items=80")
    assert code == 2
    assert f"bench: error: model 'no-scores' (path:{plugin}) does not implement Recommender: it lacks 'scores'" in err


def test_two_families_producing_one_key_is_an_error_naming_both(run_bench, tmp_path):
    plugin = tmp_path / "clash.py"
    plugin.write_text("from harness.api import HIGHER, MetricSpec, hookimpl\n\n@hookimpl\n"
                      "def crs_bench_register_metrics(registry):\n"
                      "    registry.add('my-recall', object, 'Clashes.', spec=MetricSpec('rec', {'recall@10': HIGHER}))\n")
    code, _, err = run_bench("plugins", "--plugin", str(plugin))
    assert code == 2
    assert "metric families 'ranking' (builtin:plugins.metrics.recall" in err
    assert f"and 'my-recall' (path:{plugin}) both produce key 'recall@10'" in err


@pytest.mark.parametrize("setting, message", [
    ("metric_params.pwp_bta=0.3", "unknown setting 'metric_params.pwp_bta' (did you mean 'pwp_beta'?)"),
    ("metric_params.pwp_beta=abc", "metric parameter 'pwp_beta' expects float, got 'abc'"),
    ("train.select_metric=recall@ten", "'recall@ten' is produced by no selected metric family"),
])
def test_metric_parameters_and_selection_key_are_validated(run_bench, setting, message):
    code, _, err = run_bench("run", "--model", "popularity", "--set", setting, "--dry-run")
    assert code == 2 and message in err, err


def test_a_metric_parameter_changes_its_family_identity(run_bench, tmp_path):
    results = tmp_path / "results"
    for beta in ("0.5", "0.0"):
        assert run_bench("run", "--model", "popularity", "--quiet", "--set", "dataset.params.num_items=80",
                         "--set", f"metric_params.pwp_beta={beta}", results=results)[0] == 0
    records = [json.loads(p.read_text()) for p in sorted(results.glob("runs/*/record.json"))]
    assert sorted(r["metric_families"]["longtail"]["params"]["pwp_beta"] for r in records) == [0.0, 0.5]
    zero = next(r for r in records if r["metric_families"]["longtail"]["params"]["pwp_beta"] == 0.0)
    assert zero["metrics"]["rec"]["standard"]["pwp@10"] == zero["metrics"]["rec"]["standard"]["recall@10"]
    assert run_bench("leaderboard", results=results)[0] == 0
    tables = [t for t in json.loads((results / "LEADERBOARD.json").read_text()) if t["setting"] == "standard"]
    assert len(tables) == 2  # another PWP definition: never in one table


HITS_PLUGIN = '''
from harness.api import HIGHER, MetricSpec, hookimpl


class Hits:
    """hits@5: share of samples whose label is in the top 5 (recall@5 by another name)."""

    def compute(self, lists, ctx):
        ranks = lists.ranks()
        return {"hits@5": float(((ranks > 0) & (ranks <= 5)).mean()) if lists.n_samples else None}


@hookimpl
def crs_bench_register_metrics(registry):
    registry.add("hits", Hits, "Top-5 hit rate.", version="1",
                 spec=MetricSpec("rec", {"hits@*": HIGHER}, columns=("hits@5",)))
'''


@pytest.mark.data
def test_a_family_installed_after_runs_adds_a_column_without_splitting_the_table(tmp_path, data_dir):
    from harness.cli import main

    results, cache = tmp_path / "results", tmp_path / "cache"
    common = ["--results-dir", str(results), "--cache-dir", str(cache), "--data-dir", str(data_dir), "--quiet"]
    for model in ("popularity", "repeat-context"):
        assert main(["run", "--model", model, "--dataset", "inspired", *common]) == 0
    plugin = tmp_path / "hits.py"
    plugin.write_text(HITS_PLUGIN)
    assert main(["leaderboard", "--results-dir", str(results)]) == 0
    before = json.loads((results / "LEADERBOARD.json").read_text())
    runs = sorted((results / "runs").iterdir())
    # back-fill the new family into one run only: it must not split the table
    assert main(["rescore", str(runs[0]), "--plugin", str(plugin), *common[:-1]]) == 0
    assert main(["leaderboard", "--results-dir", str(results), "--plugin", str(plugin)]) == 0
    after = json.loads((results / "LEADERBOARD.json").read_text())
    assert [(t["task"], t["setting"]) for t in after] == [(t["task"], t["setting"]) for t in before] == [
        ("rec", "standard"), ("rec", "novel")]
    standard = after[0]
    assert len(standard["rows"]) == 2 and "hits" in standard["metric_families"]
    rescored = json.loads((runs[0] / "record.json").read_text())
    row = next(r for r in standard["rows"] if r["config_hash"] == rescored["config_hash"])
    assert row["metrics"]["hits@5"]["mean"] == rescored["metrics"]["rec"]["standard"]["hits@5"]
    assert rescored["metrics"]["rec"]["standard"]["hits@5"] == pytest.approx(
        _recall_at(runs[0], 5))
    markdown = (results / "LEADERBOARD.md").read_text()
    assert "| hits@5 |" in markdown and markdown.count("## inspired · rec · standard") == 1
    # rescoring never changes the other values of the run
    assert main(["rescore", str(runs[0]), "--check", "--plugin", str(plugin), *common[:-1]]) == 0


def _recall_at(run_dir: Path, k: int) -> float:
    from harness.results import read_samples

    rows = [r for r in read_samples(run_dir) if r.get("setting") == "standard"]
    return sum(r["label"] in r["top"][:k] for r in rows) / len(rows)


GENERATOR_PLUGIN = '''
from collections import Counter

from harness.api import hookimpl


class MostFrequentResponse:
    """Answers every context with the most frequent training response: a toy conversation baseline."""

    def __init__(self, ctx):
        self.response = None

    def fit(self, train, valid):
        self.response = Counter(s.reference for s in train.conv_samples).most_common(1)[0][0]
        return {"response": self.response}

    def generate(self, split, samples, recommendations):
        return [self.response] * len(samples)


@hookimpl
def crs_bench_register_generators(registry):
    registry.add("most-frequent", MostFrequentResponse, "The most frequent training response, always.")
'''


def test_a_toy_generator_lands_in_a_conv_table(run_bench, tmp_path):
    results = tmp_path / "results"
    plugin = tmp_path / "generator.py"
    plugin.write_text(GENERATOR_PLUGIN)
    code, out, err = run_bench("run", "--model", "popularity", "--generator", "most-frequent", "--plugin", str(plugin),
                               "--quiet", "--set", "dataset.params.num_items=80", results=results)
    assert code == 0, err
    [path] = results.glob("runs/*/record.json")
    record = json.loads(path.read_text())
    assert record["tasks"] == ["conv", "rec"] and record["components"]["generator"]["name"] == "most-frequent"
    conv = record["metrics"]["conv"]["all"]
    from harness.results import read_samples

    responses = [r for r in read_samples(path.parent) if r.get("task") == "conv"]
    assert len(responses) == record["conversation"]["samples"] == record["dataset"]["splits"]["test"]["conv_samples"] > 0
    tokens = responses[0]["prediction"].split()
    # J identical responses: distinct unigrams of one response over all J responses' unigrams
    assert conv["dist1_ratio"] == pytest.approx(len(set(tokens)) / (len(tokens) * len(responses)))
    assert record["metric_families"]["distinct"] == {"task": "conv", "version": "1", "params": {}}
    assert run_bench("leaderboard", "--plugin", str(plugin), results=results)[0] == 0
    tables = json.loads((results / "LEADERBOARD.json").read_text())
    [conv_table] = [t for t in tables if t["task"] == "conv"]
    assert conv_table["setting"] == "all" and conv_table["rows"][0]["generator"] == "most-frequent"
    assert conv_table["rows"][0]["metrics"]["dist1_ratio"]["mean"] == conv["dist1_ratio"]
    markdown = (results / "LEADERBOARD.md").read_text()
    assert "## synthetic · conv · all" in markdown and "| bleu2_legacy |" in markdown
    code, out, _ = run_bench("rescore", str(path.parent), "--check", "--plugin", str(plugin))
    assert code == 0 and "identical" in out


DIALOGUES_ONLY_PLUGIN = '''
from harness.api import hookimpl


def dialogues_only(data_dir, **params):
    """The embedded dataset as a loader that follows the dataset interface to the letter: no samples."""
    from plugins.synthetic import build_synthetic

    dataset = build_synthetic(num_items=80)
    for split in dataset.splits.values():
        split.rec_samples, split.conv_samples = [], []
    return dataset


@hookimpl
def crs_bench_register_datasets(registry):
    registry.add("dialogues-only", dialogues_only, "Dialogues only; the harness builds the samples.")
'''


def test_a_loader_returning_dialogues_only_gets_the_harness_samples(run_bench, tmp_path):
    plugin = tmp_path / "dialogues_only.py"
    plugin.write_text(DIALOGUES_ONLY_PLUGIN)
    results = tmp_path / "results"
    for dataset, extra in (("dialogues-only", ["--plugin", str(plugin)]), ("synthetic", ["--set", "dataset.params.num_items=80"])):
        code, _, err = run_bench("run", "--model", "popularity", "--dataset", dataset, "--quiet", *extra, results=results)
        assert code == 0, err
    records = {r["config"]["dataset"]["name"]: r for r in
               (json.loads(p.read_text()) for p in results.glob("runs/*/record.json"))}
    built, embedded = records["dialogues-only"], records["synthetic"]
    assert built["dataset"]["splits"] == embedded["dataset"]["splits"]  # the same samples, cut by the harness
    assert built["metrics"] == embedded["metrics"] and built["metrics"]["rec"]["standard"]["n_samples"] > 0


def test_models_see_the_training_split_after_augmentation(tmp_path, plugins):
    from harness.config import resolve
    from harness.runner import execute

    seen = {}

    class Spy:
        @hookimpl
        def crs_bench_run_start(self, run):
            seen["ctx_train"] = len(run.context.train.dialogues)
            seen["ctx_dataset_train"] = len(run.context.dataset.splits["train"].dialogues)
            seen["original"] = len(run.dataset.splits["train"].dialogues)

    from harness.plugin_manager import load_plugins

    fresh = load_plugins(autoload=False)
    fresh.manager.register(Spy(), name="spy")
    config = resolve(flags={"model": "popularity", "augmenter": "template"},
                     overrides=["dataset.params.num_items=80"])[0]
    record = execute(config, fresh, results_dir=tmp_path / "r", cache_dir=tmp_path / "c", quiet=True)
    added = record["augmentation"]["added_dialogues"]
    assert added > 0
    assert seen["ctx_train"] == seen["ctx_dataset_train"] == seen["original"] + added
