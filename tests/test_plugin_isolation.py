"""Issue 18, isolation: one broken installed plugin no longer disables every command; a plugin is
disabled by name; hook mistakes are one line naming plugin and function; `--plugin` of a loaded plugin
is a notice, not pluggy's dump."""
from __future__ import annotations

import importlib
import importlib.metadata
import json
import sys

import pytest

from harness import plugin_manager
from harness.plugin_manager import PluginError, load_plugins

TINY = ["--set", "dataset.params.num_items=80", "--set", "dataset.params.train_dialogues=60",
        "--set", "dataset.params.valid_dialogues=20", "--set", "dataset.params.test_dialogues=20"]

GOOD = '''
from harness.api import HIGHER, MetricSpec, hookimpl


class Hits:
    def compute(self, lists, ctx):
        return {"hits5@5": float(((lists.ranks() > 0) & (lists.ranks() <= 5)).mean()) if lists.n_samples else None}


class Mode:
    trainable = False

    def __init__(self, ctx):
        import torch
        self.scores_ = torch.arange(ctx.dataset.num_items, dtype=torch.float32)

    def make_batch(self, split, samples):
        return len(samples)

    def scores(self, batch):
        return self.scores_.expand(batch, -1)


@hookimpl
def crs_bench_register_models(registry):
    registry.add("iso-model", Mode, "Scores items by index (test only).")


@hookimpl
def crs_bench_register_metrics(registry):
    registry.add("iso-hits", Hits, "Share of top-5 hits (test only).", spec=MetricSpec("rec", {"hits5@5": HIGHER}))
'''
# registers its model, then fails while registering its metric family
HALF = '''
from harness.api import hookimpl


@hookimpl
def crs_bench_register_models(registry):
    registry.add("half-model", lambda ctx: None, "Registered before the failure (test only).")


@hookimpl
def crs_bench_register_metrics(registry):
    raise RuntimeError("metric registration bug")
'''
BROKEN_IMPORT = "import sklearn_that_is_not_installed\n"
MISSPELT = '''
from harness.api import hookimpl


@hookimpl
def crs_bench_register_modles(registry):
    pass
'''
UNMARKED = '''
def crs_bench_register_models(registry):
    registry.add("never", lambda ctx: None, "Never registered.")
'''
BAD_ARGUMENTS = '''
from harness.api import hookimpl


@hookimpl
def crs_bench_run_start(run, ctx):
    pass
'''
# produces recall@10, which the built-in `ranking` family already produces
RECALL_CLASH = '''
from harness.api import HIGHER, MetricSpec, hookimpl


class Fake:
    def compute(self, lists, ctx):
        return {"recall@10": 0.999}


@hookimpl
def crs_bench_register_metrics(registry):
    registry.add("fake-recall", Fake, "Claims recall@10 (test only).", spec=MetricSpec("rec", {"recall@10": HIGHER}))
'''


class FakeDist:
    def __init__(self, name: str, version: str = "1.0"):
        self.name, self.version, self.files = name, version, []


class FakeEntryPoint:
    """An installed plugin as `importlib.metadata.entry_points` yields it: a module on sys.path."""

    def __init__(self, name: str, module: str, dist: str):
        self.name, self.module, self.dist = name, module, FakeDist(dist)

    def load(self):
        return importlib.import_module(self.module)


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Install fake entry-point plugins: installed({"name": source, ...}); autoload is switched on."""
    monkeypatch.delenv("CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv(plugin_manager.DISABLE_ENV, raising=False)
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def install(plugins: dict[str, str]) -> None:
        points = []
        for name, source in plugins.items():
            module = f"iso_{name.replace('-', '_')}_{abs(hash(str(tmp_path))) % 10**6}"
            (site / f"{module}.py").write_text(source)
            sys.modules.pop(module, None)
            points.append(FakeEntryPoint(name, module, f"{name}-dist"))
        importlib.invalidate_caches()
        original = importlib.metadata.entry_points
        monkeypatch.setattr(importlib.metadata, "entry_points",  # only our group: torch reads its own too
                            lambda group=None, **kw: points if group == "crs_bench" else original(group=group, **kw))

    return install


def enabled_bench(run_bench, monkeypatch):
    """run_bench with entry points loaded (the fixture switches autoload off; undo that per call)."""
    def run(*args, **kwargs):
        monkeypatch.delenv("CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)
        return run_bench(*args, **kwargs)
    return run


# --- a broken installed plugin ----------------------------------------------------------------------


@pytest.mark.parametrize("source, problem", [
    (BROKEN_IMPORT, "failed to import: ModuleNotFoundError: No module named 'sklearn_that_is_not_installed'"),
    (HALF, "raised in crs_bench_register_metrics: RuntimeError: metric registration bug"),
    (MISSPELT, "is invalid: hook function 'crs_bench_register_modles' names no crs-bench hook: did you mean "
               "'crs_bench_register_models'?"),
    (UNMARKED, "is invalid: function 'crs_bench_register_models' is not marked @hookimpl and would be ignored"),
    (BAD_ARGUMENTS, "is invalid: hook 'crs_bench_run_start' takes argument(s) 'ctx', which the hook does not pass "
                    "(it passes: run)"),
    (RECALL_CLASH, "was refused in crs_bench_register_metrics: metric families 'ranking' (builtin:plugins.metrics.recall"),
])
def test_read_only_commands_load_past_a_broken_plugin(installed, run_bench, monkeypatch, tmp_path, source, problem):
    installed({"good": GOOD, "broken": source})
    bench = enabled_bench(run_bench, monkeypatch)
    code, out, err = bench("plugins")
    assert code == 0, err
    warning = "bench: warning: plugin 'broken' (entry point of broken-dist 1.0) " + problem
    assert warning in err and len(err.strip().splitlines()) == 1, err
    assert "iso-model" in out and "popularity" in out  # the healthy plugins and the built-ins are there
    listing = out.split("skipped: ")[0]
    assert "skipped: plugin 'broken'" in out and "half-model" not in listing and "fake-recall" not in listing
    code, out, err = bench("leaderboard")
    assert code == 0 and warning in err
    code, out, err = bench("data", "info", "synthetic", "--cache-dir", str(tmp_path / "cache"))
    assert code == 0 and warning in err and "train" in out


def test_the_strict_loader_still_refuses_a_broken_plugin(installed):
    installed({"broken": BROKEN_IMPORT})
    with pytest.raises(PluginError, match="plugin 'broken' .* failed to import"):
        load_plugins()


def test_a_recall_at_10_from_a_plugin_never_overwrites_the_built_in(installed, run_bench, monkeypatch, tmp_path):
    """The issue: popularity's Recall@10 went from 0.2057 to 0.9990. Now the family is refused at load,
    with both families named, and the run uses the built-in definition."""
    installed({"broken": RECALL_CLASH})
    bench = enabled_bench(run_bench, monkeypatch)
    code, out, err = bench("run", "--model", "popularity", "--quiet", *TINY)
    assert code == 0, err
    assert "and 'fake-recall' (entrypoint:broken (broken-dist 1.0)) both produce key 'recall@10'" in err
    [path] = (tmp_path / "results" / "runs").glob("*/record.json")
    record = json.loads(path.read_text())
    assert record["metrics"]["rec"]["standard"]["recall@10"] < 0.9
    assert "fake-recall" not in record["metric_families"]
    assert record["plugins_skipped"][0]["name"] == "broken"
    code, out, err = bench("run", "--model", "popularity", "--quiet", "--set", "metrics=[ranking, fake-recall]", *TINY)
    assert code == 2 and "metric 'fake-recall' is not available: it comes from" not in err  # it registered nothing
    assert "unknown metric 'fake-recall'" in err and "plugin 'broken'" in err


def test_run_refuses_a_component_of_a_broken_plugin_and_runs_without_it_otherwise(installed, run_bench, monkeypatch,
                                                                                    tmp_path):
    installed({"good": GOOD, "half": HALF, "gone": BROKEN_IMPORT})
    bench = enabled_bench(run_bench, monkeypatch)
    code, out, err = bench("run", "--model", "half-model", "--quiet", *TINY)
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        "bench: error: model 'half-model' is not available: it comes from plugin 'half' (entry point of half-dist "
        "1.0), which was skipped: raised in crs_bench_register_metrics: RuntimeError: metric registration bug")
    code, out, err = bench("run", "--model", "knn-from-gone", "--quiet", *TINY)
    assert code == 2 and "unknown model 'knn-from-gone'" in err
    assert ("it may come from plugin 'gone' (entry point of gone-dist 1.0), which was skipped: failed to import"
            in err)  # 'half' registered what it had: its model is known, this name is not
    assert not (tmp_path / "results").exists()  # nothing left behind
    # a run that needs nothing from the broken plugins runs, and its record says what was skipped
    code, out, err = bench("run", "--model", "iso-model", "--quiet", *TINY)
    assert code == 0, err
    [path] = (tmp_path / "results" / "runs").glob("*/record.json")
    record = json.loads(path.read_text())
    assert {row["name"] for row in record["plugins_skipped"]} == {"half", "gone"}
    assert "iso-hits" in record["metric_families"]


def test_an_explicit_plugin_that_fails_still_stops_every_command(run_bench, tmp_path):
    plugin = tmp_path / "gone.py"
    plugin.write_text(BROKEN_IMPORT)
    for command in (["plugins"], ["leaderboard"]):
        code, out, err = run_bench(*command, "--plugin", str(plugin))
        assert code == 2 and f"plugin file '{plugin}' failed to import: ModuleNotFoundError" in err


# --- disabling -------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["--disable-plugin", "-p", "env", "distribution"])
def test_a_plugin_is_disabled_by_name(installed, run_bench, monkeypatch, how):
    installed({"good": GOOD, "broken": BROKEN_IMPORT})
    bench = enabled_bench(run_bench, monkeypatch)
    if how == "env":
        monkeypatch.setenv("CRS_BENCH_DISABLE_PLUGINS", "broken, good")
        args = []
    elif how == "-p":
        args = ["-p", "no:broken", "-p", "no:good"]
    elif how == "distribution":
        args = ["--disable-plugin", "broken-dist", "--disable-plugin", "good-dist"]
    else:
        args = ["--disable-plugin", "broken", "--disable-plugin", "good"]
    code, out, err = bench("plugins", *args)
    assert code == 0 and err == "", err  # a disabled plugin is not even imported: no warning
    assert "iso-model" not in out and "popularity" in out and "disabled: " in out


def test_disabling_a_built_in_and_the_core(run_bench):
    code, out, err = run_bench("plugins", "--disable-plugin", "plugins.lumicrs")
    assert code == 0 and "lumicrs" not in out.split("disabled:")[0] and "disabled: plugins.lumicrs" in out
    code, out, err = run_bench("run", "--model", "lumicrs", "--disable-plugin", "plugins.lumicrs", "--dry-run")
    assert code == 2 and "it may come from a disabled plugin (plugins.lumicrs)" in err
    code, out, err = run_bench("plugins", "--disable-plugin", "harness.stages")
    assert code == 2 and "plugin 'harness.stages' holds the built-in train and predict stages" in err
    code, out, err = run_bench("plugins", "--disable-plugin", "no-such-plugin")
    assert code == 0 and "bench: note: no plugin named 'no-such-plugin' to disable" in err


# --- hook mistakes in an explicit plugin --------------------------------------------------------------


@pytest.mark.parametrize("source, message", [
    (MISSPELT, "is invalid: hook function 'crs_bench_register_modles' names no crs-bench hook: did you mean "
               "'crs_bench_register_models'?"),
    (UNMARKED, "is invalid: function 'crs_bench_register_models' is not marked @hookimpl and would be ignored: "
               "decorate it with @hookimpl (from harness.api import hookimpl)"),
    (BAD_ARGUMENTS, "is invalid: hook 'crs_bench_run_start' takes argument(s) 'ctx'"),
])
def test_hook_mistakes_are_one_line_naming_plugin_and_function(run_bench, tmp_path, source, message):
    plugin = tmp_path / "mistake.py"
    plugin.write_text(source)
    code, out, err = run_bench("plugins", "--plugin", str(plugin))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.strip().startswith(f"bench: error: plugin '{plugin}' (--plugin) {message}"), err
    assert "<module" not in err and "Traceback" not in err


def test_a_plugin_already_loaded_is_not_loaded_twice(installed, run_bench, monkeypatch):
    installed({"good": GOOD})
    bench = enabled_bench(run_bench, monkeypatch)
    module = plugin_manager.importlib.metadata.entry_points(group="crs_bench")[0].module
    code, out, err = bench("plugins", "--plugin", module)
    assert code == 0, err
    assert err.strip() == (f"bench: note: plugin '{module}' (path:{module}) is already loaded as "
                           f"entrypoint:good (good-dist 1.0); not loaded twice")
    code, out, err = run_bench("plugins", "--plugin", "plugins.baselines")
    assert code == 0 and "is already loaded as builtin:plugins.baselines (crs-bench 0.1.0)" in err
    assert "ValueError" not in err and len(err.strip().splitlines()) == 1


RAISING_METRIC = '''
from harness.api import HIGHER, MetricSpec, hookimpl


class Buggy:
    def compute(self, lists, ctx):
        return {"buggy@10": 1.0 / 0}


@hookimpl
def crs_bench_register_metrics(registry):
    registry.add("buggy", Buggy, "Divides by zero (test only).", spec=MetricSpec("rec", {"buggy@*": HIGHER}))
'''


def test_a_buggy_installed_metric_fails_before_training_and_says_how_to_run_without_it(installed, run_bench,
                                                                                       monkeypatch, tmp_path):
    """The issue: every registered metric runs by default, so one buggy installed metric broke every model's
    runs with a traceback after the whole training."""
    installed({"buggy-metrics": RAISING_METRIC})
    bench = enabled_bench(run_bench, monkeypatch)
    code, out, err = bench("run", "--model", "linear-context", "--epochs", "3", "--quiet", *TINY)
    assert code == 2
    assert err.strip() == (
        "bench: error: metric 'buggy' (entrypoint:buggy-metrics (buggy-metrics-dist 1.0)) failed in metric compute "
        "(pre-training check, standard): ZeroDivisionError: float division by zero (every registered family runs by "
        "default: leave it out with --set 'metrics=[...]' or --disable-plugin buggy-metrics); nothing was kept")
    assert not (tmp_path / "results").exists()
    for way in (["--disable-plugin", "buggy-metrics"], ["--set", "metrics=[ranking, longtail]"]):
        code, out, err = bench("run", "--model", "popularity", "--quiet", *TINY, *way)
        assert code == 0, err


def test_rescore_compare_and_migrate_load_past_a_broken_plugin(installed, run_bench, monkeypatch, tmp_path):
    results = tmp_path / "results"
    for model in ("popularity", "repeat-context"):
        assert run_bench("run", "--model", model, "--quiet", *TINY, results=results)[0] == 0
    first, second = sorted((results / "runs").iterdir())
    installed({"broken": BROKEN_IMPORT})
    bench = enabled_bench(run_bench, monkeypatch)
    warning = "bench: warning: plugin 'broken' (entry point of broken-dist 1.0) failed to import"
    cache = ["--cache-dir", str(tmp_path / "cache")]
    code, out, err = bench("rescore", str(first), "--check", *cache)
    assert code == 0 and "identical" in out and warning in err, err
    code, out, err = bench("compare", str(first), str(second), "--json", "--resamples", "50", *cache)
    assert code == 0 and warning in err and json.loads(out)
    code, out, err = bench("migrate", "--check", "--results-dir", str(results))
    assert code == 0, err
