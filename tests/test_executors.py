"""Grids through executors: a 4-cell grid (2 learning rates x 2 seeds of `linear-context` on synthetic)
through the local executor, a local Ray instance and submitit's local executor gives identical metrics;
reruns skip complete cells; one failing cell does not stop the others under --keep-going."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

GRID = """\
model: {name: linear-context}
train: {epochs: 1}
limit: 40
seeds: [0, 1]
grid:
  train.lr: [0.001, 0.01]
"""

FRAGILE_PLUGIN = '''
from harness.api import hookimpl
from plugins.models.linear_context import LinearContextRecommender


def fragile(ctx, fail: bool = False, **params):
    if fail:
        raise RuntimeError("fragile model asked to fail")
    return LinearContextRecommender(ctx, **params)


@hookimpl
def crs_bench_register_models(registry):
    registry.add("fragile", fragile, "linear-context that fails to build when fail=True")
'''

FRAGILE_GRID = """\
model: {name: fragile}
train: {epochs: 1}
limit: 40
seeds: [0, 1]
grid:
  model.params.fail: [true, false]
"""


def metrics_by_run(results: Path) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text())["metrics"] for path in (results / "runs").glob("*/record.json")}


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory):
    """The reference: the grid through the default local executor, run once for the module."""
    from harness.cli import main

    root = tmp_path_factory.mktemp("local")
    recipe = root / "grid.yaml"
    recipe.write_text(GRID)
    code = main(["run", str(recipe), "--quiet", "--results-dir", str(root / "results"),
                 "--cache-dir", str(root / "cache")])
    assert code == 0
    found = metrics_by_run(root / "results")
    assert len(found) == 4
    return recipe, found


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    import os

    # a shared machine's other processes must not get our tasks killed by Ray's memory monitor
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def no_autoload(monkeypatch):
    monkeypatch.setenv("CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD", "1")


def test_ray_grid_matches_local_and_reruns_skip(local_grid, ray_instance, run_bench, tmp_path):
    recipe, expected = local_grid
    results = tmp_path / "ray-results"
    code, out, err = run_bench("run", str(recipe), "--quiet", "--executor", "ray", results=results)
    assert code == 0, err
    assert metrics_by_run(results) == expected
    assert out.count("synthetic__linear-context") == 4

    code, out, err = run_bench("run", str(recipe), "--quiet", "--executor", "ray", results=results)
    assert code == 0, err
    assert err.count("complete, skipped (its complete record exists)") == 4
    assert metrics_by_run(results) == expected


def test_submitit_grid_matches_local(local_grid, run_bench, tmp_path):
    """submitit's local cluster: the array's tasks as subprocesses (its debug cluster leaks log files)."""
    pytest.importorskip("submitit")
    recipe, expected = local_grid
    results = tmp_path / "slurm-results"
    code, out, err = run_bench("run", str(recipe), "--quiet", "--executor", "slurm",
                               "--executor-option", "cluster=local",
                               "--executor-option", f"folder={tmp_path / 'jobs'}",
                               "--executor-option", "poll_seconds=0.2", results=results)
    assert code == 0, err
    assert metrics_by_run(results) == expected


def test_keep_going_runs_the_other_cells_and_summarises(ray_instance, run_bench, tmp_path):
    plugin, recipe = tmp_path / "fragile.py", tmp_path / "fragile.yaml"
    plugin.write_text(FRAGILE_PLUGIN)
    recipe.write_text(FRAGILE_GRID)
    results = tmp_path / "results"
    code, out, err = run_bench("run", str(recipe), "--plugin", str(plugin), "--quiet", "--executor", "ray",
                               "--keep-going", results=results)
    assert code == 2
    assert len(list((results / "runs").glob("*/record.json"))) == 2  # the two cells with fail=false
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("bench: error: 2 cell(s) failed: ") and summary.count("fragile model asked to fail") == 2


def test_local_keep_going_and_stop_at_first_failure(run_bench, tmp_path):
    plugin, recipe = tmp_path / "fragile.py", tmp_path / "fragile.yaml"
    plugin.write_text(FRAGILE_PLUGIN)
    recipe.write_text(FRAGILE_GRID)
    code, out, err = run_bench("run", str(recipe), "--plugin", str(plugin), "--quiet", "--keep-going",
                               results=tmp_path / "kept")
    assert code == 2 and len(list((tmp_path / "kept" / "runs").glob("*/record.json"))) == 2
    assert "2 cell(s) failed" in err.strip().splitlines()[-1]
    code, out, err = run_bench("run", str(recipe), "--plugin", str(plugin), "--quiet", results=tmp_path / "stopped")
    assert code == 2 and not list((tmp_path / "stopped").glob("runs/*/record.json"))  # the first cell failed: stop
    assert "fragile model asked to fail" in err


def test_ray_refuses_a_missing_data_directory(ray_instance, run_bench, tmp_path, local_grid):
    recipe, _ = local_grid
    code, out, err = run_bench("run", str(recipe), "--quiet", "--executor", "ray", "--data-dir",
                               str(tmp_path / "nowhere"), results=tmp_path / "results")
    assert code == 2
    assert "does not exist on Ray node(s)" in err and not (tmp_path / "results" / "runs").exists()


def test_unknown_executor_option_is_one_line(run_bench, tmp_path, local_grid):
    recipe, _ = local_grid
    code, out, err = run_bench("run", str(recipe), "--executor", "ray", "--executor-option", "wrokers=2")
    assert code == 2 and "executor 'ray' has no parameter 'wrokers'" in err and len(err.strip().splitlines()) == 1


def test_ray_declares_a_gpu_for_a_cuda_cell():
    """What a cell reserves: one GPU for cuda (and auto on a cluster with GPUs), none for cpu."""
    from harness.api import Cell
    from plugins.executors.ray import RayExecutor

    executor = RayExecutor()
    assert executor.gpus_for(Cell(0, "x", {"device": "cuda"}), cluster_gpus=1.0) == 1.0
    assert executor.gpus_for(Cell(0, "x", {"device": "auto"}), cluster_gpus=1.0) == 1.0
    assert executor.gpus_for(Cell(0, "x", {"device": "cpu"}), cluster_gpus=1.0) == 0.0
    assert executor.gpus_for(Cell(0, "x", {"device": "auto"}), cluster_gpus=0.0) == 0.0
