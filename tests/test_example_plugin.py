"""A packaged third-party plugin, installed into the venv, found through its entry point and run by `bench`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "tests" / "example_plugin"
BENCH = Path(sys.executable).with_name("bench")


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def installed_example():
    result = pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(EXAMPLE))
    if result.returncode != 0:
        pytest.fail(f"could not install the example plugin: {result.stderr[-2000:]}")
    yield
    pip("uninstall", "-y", "crs-bench-example-plugin")


def test_entry_point_plugin_runs_through_bench(installed_example, tmp_path):
    if not BENCH.exists():
        pytest.skip(f"the bench console script is not installed next to {sys.executable}")
    env = {k: v for k, v in os.environ.items() if k != "CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD"}
    listing = subprocess.run([str(BENCH), "plugins"], capture_output=True, text=True, env=env, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert "example-genre-neighbours" in listing.stdout
    assert "[entrypoint crs-bench-example-plugin 0.3.1]" in listing.stdout

    run = subprocess.run([str(BENCH), "run", "--model", "example-genre-neighbours", "--quiet",
                          "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache"),
                          "--set", "metrics=[ranking, example-hits]"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    [record_path] = (tmp_path / "results" / "runs").glob("*/record.json")
    record = json.loads(record_path.read_text())
    assert record["components"]["model"]["origin"] == {
        "plugin": "example", "source": "entrypoint", "distribution": "crs-bench-example-plugin", "version": "0.3.1"}
    assert record["metric_families"] == {"ranking": {"task": "rec", "version": "1", "params": {}},
                                         "example-hits": {"task": "rec", "version": "1", "params": {}}}
    hits = record["metrics"]["rec"]["standard"]["example_hits@5"]
    # the KG-neighbour model finds same-genre movies: it beats chance (5 / 300 items) by far
    assert hits / record["metrics"]["rec"]["standard"]["n_samples"] > 5 * 5 / 300

    disabled = subprocess.run([str(BENCH), "plugins"], capture_output=True, text=True, timeout=120,
                              env={**env, "CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert "example-genre-neighbours" not in disabled.stdout
