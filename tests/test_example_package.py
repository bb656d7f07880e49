"""Issue 18: the example third-party package (examples/crs-bench-example-plugin) installed non-editable, as a
user would, and used end to end through its `crs_bench` entry point; its metric family joins the tables of
built-in runs (also the committed INSPIRED table) as a column, never as a table of its own."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "crs-bench-example-plugin"
TINY = ["--set", "dataset.params.num_items=80", "--set", "dataset.params.train_dialogues=60",
        "--set", "dataset.params.valid_dialogues=20", "--set", "dataset.params.test_dialogues=20"]
BROKEN_PACKAGE = {
    "pyproject.toml": '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
                      '[project]\nname = "crs-bench-broken-example"\nversion = "0.0.1"\n\n'
                      '[project.entry-points.crs_bench]\nbroken-example = "crs_bench_broken_example"\n\n'
                      '[tool.setuptools]\npackages = ["crs_bench_broken_example"]\n',
    "crs_bench_broken_example/__init__.py": "import a_dependency_that_is_not_installed\n",
}


def pip_install(source: Path, target: Path) -> None:
    """Non-editable into `target` (put on PYTHONPATH): the project venv is shared and stays untouched."""
    build = target.parent / f"build-{source.name}"
    shutil.copytree(source, build, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    result = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "install", "--no-deps",
                             "--no-build-isolation", "--no-index", "--target", str(target), str(build)],
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"could not install {source.name}: {result.stderr[-2000:]}")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    target = tmp_path_factory.mktemp("example") / "site"
    pip_install(EXAMPLE, target)
    return target


def bench(site: Path | str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD",
                                                                   "CRS_BENCH_DISABLE_PLUGINS", "CRS_BENCH_PLUGINS")}
    environment.update({"PYTHONPATH": f"{site}{os.pathsep}{REPO_ROOT}", "HF_HUB_OFFLINE": "1", **(env or {})})
    site = Path(str(site).split(os.pathsep)[0])
    script = Path(sys.executable).with_name("bench")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "harness.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=environment, timeout=600,
                          cwd=site.parent)


@pytest.mark.slow
def test_the_example_package_end_to_end(site, tmp_path):
    listing = bench(site, "plugins")
    assert listing.returncode == 0, listing.stderr
    for name in ("item-knn", "popularity-ce", "novelty", "tail-duplicate"):
        assert f"  {name:<20} " in listing.stdout and "<- example-plugin [entrypoint crs-bench-example 0.1.0]" in \
            listing.stdout
    described = json.loads(bench(site, "plugins", "item-knn", "--json").stdout)
    assert described["params"] == [{"name": "k", "type": "int", "default": 20, "required": False},
                                   {"name": "shrink", "type": "float", "default": 10.0, "required": False}]

    results, cache = tmp_path / "results", tmp_path / "cache"
    common = ["--results-dir", str(results), "--cache-dir", str(cache), "--quiet", *TINY]
    builtin = bench(site, "run", "--model", "popularity", "--disable-plugin", "example-plugin", *common)
    assert builtin.returncode == 0, builtin.stderr
    run = bench(site, "run", "--model", "item-knn", "--loss", "popularity-ce", "--augmenter", "tail-duplicate",
                "--epochs", "2", *common)
    assert run.returncode == 0, run.stderr
    records = {json.loads(p.read_text())["config"]["model"]["name"]: json.loads(p.read_text())
               for p in results.glob("runs/*/record.json")}
    knn, popularity = records["item-knn"], records["popularity"]
    for kind in ("model", "loss", "augmenter"):
        assert knn["components"][kind]["origin"] == {"plugin": "example-plugin", "source": "entrypoint",
                                                    "distribution": "crs-bench-example", "version": "0.1.0"}
    assert knn["augmentation"]["added_dialogues"] > 0 and knn["training"]["epochs_run"] == 2
    assert "novelty" in knn["metric_families"] and "novelty" not in popularity["metric_families"]
    fingerprint = next(p for p in knn["plugins"] if p["name"] == "example-plugin")["fingerprint"]
    assert fingerprint.startswith("sha256:")

    board = bench(site, "leaderboard", "--print", "--results-dir", str(results))
    assert board.returncode == 0, board.stderr
    assert board.stdout.count("## synthetic · rec · standard") == 1  # one table: the family is a column
    header = next(line for line in board.stdout.splitlines() if line.startswith("| model |"))
    assert header.rstrip(" |").endswith("novelty@10")
    rows = [line for line in board.stdout.split("## synthetic · rec · standard")[1].split("##")[0].splitlines()
            if line.startswith("| item-knn") or line.startswith("| popularity")]
    assert len(rows) == 2

    # a broken installed plugin next to it: every command still works, with one warning naming it
    broken_source = tmp_path / "broken-package"
    for relative, text in BROKEN_PACKAGE.items():
        (broken_source / relative).parent.mkdir(parents=True, exist_ok=True)
        (broken_source / relative).write_text(text)
    broken_site = tmp_path / "broken-site"
    pip_install(broken_source, broken_site)
    both = f"{site}{os.pathsep}{broken_site}"
    warning = ("bench: warning: plugin 'broken-example' (entry point of crs-bench-broken-example 0.0.1) failed to "
               "import: ModuleNotFoundError: No module named 'a_dependency_that_is_not_installed'")
    for args in (["leaderboard", "--results-dir", str(results)], ["plugins"],
                 ["data", "info", "synthetic", "--cache-dir", str(cache)]):
        result = bench(both, *args)
        assert result.returncode == 0 and warning in result.stderr, (args, result.stderr)
    again = bench(both, "run", "--model", "item-knn", "--epochs", "1", *common)
    assert again.returncode == 0 and warning in again.stderr, again.stderr
    quiet = bench(both, "plugins", env={"CRS_BENCH_DISABLE_PLUGINS": "broken-example"})
    assert quiet.returncode == 0 and quiet.stderr == ""


@pytest.mark.slow
def test_the_example_package_tests_pass_with_the_kit(site, tmp_path):
    """The package's own tests (examples/.../tests) use harness.testing against the installed plugin."""
    tests = tmp_path / "tests"
    shutil.copytree(EXAMPLE / "tests", tests)
    environment = {k: v for k, v in os.environ.items() if k != "CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD"}
    environment.update({"PYTHONPATH": f"{site}{os.pathsep}{REPO_ROOT}", "HF_HUB_OFFLINE": "1"})
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
                            capture_output=True, text=True, env=environment, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "5 passed" in result.stdout


@pytest.mark.data
def test_a_new_family_joins_the_committed_inspired_table(tmp_path, data_dir, monkeypatch):
    """The issue's failure: an installed metric family put new runs in a second `inspired · standard`
    table, and `bench rescore` back-filling made a third. Here the novelty family is back-filled into a copy
    of a committed INSPIRED run: the committed tables keep their number and rows, and gain a column."""
    from harness.cli import main
    from harness.leaderboard import outputs
    from harness.plugin_manager import load_plugins

    results = tmp_path / "results"
    shutil.copytree(REPO_ROOT / "results", results, ignore=shutil.ignore_patterns("checkpoint*", ".lock"))
    shutil.copytree(REPO_ROOT / "benchmarks", tmp_path / "benchmarks")  # the leaderboard views name recipes
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    committed = json.loads((results / "LEADERBOARD.json").read_text())
    run_dir = sorted(results.glob("runs/inspired__popularity__ce__none__seed0__*"))[0]  # any one committed run
    code = main(["rescore", str(run_dir), "--plugin", "crs_bench_example_plugin", "--data-dir", str(data_dir),
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    record = json.loads((run_dir / "record.json").read_text())
    assert record["metric_families"]["novelty"] == {"task": "rec", "version": "1", "params": {"novelty_ks": [10]}}

    plugins = load_plugins(extra=["crs_bench_example_plugin"], autoload=False)
    files = outputs(results, plugins.registries, significance=False)
    tables = json.loads(files[results / "LEADERBOARD.json"])
    key = [(t["dataset"], t["task"], t["setting"]) for t in tables]
    assert key == [(t["dataset"], t["task"], t["setting"]) for t in committed]  # no table split off
    for before, after in zip(committed, tables):
        assert len(after["rows"]) == len(before["rows"])
        for old, new in zip(sorted(before["rows"], key=lambda r: r["config_hash"]),
                            sorted(after["rows"], key=lambda r: r["config_hash"])):
            assert {k: v for k, v in new["metrics"].items() if not k.startswith("novelty")} == old["metrics"]
    standard = next(t for t in tables if t["dataset"] == "inspired" and t["setting"] == "standard")
    assert "novelty" in standard["metric_families"]
    with_novelty = [row for row in standard["rows"] if "novelty@10" in row["metrics"]]
    assert [row["model"] for row in with_novelty] == ["popularity"]
    markdown = files[results / "LEADERBOARD.md"]
    section = markdown.split("\n## inspired · rec · standard\n")[1].split("\n## ")[0]
    header = next(line for line in section.splitlines() if line.startswith("| model |"))
    assert header.rstrip(" |").endswith("novelty@10")  # the new family's column, after the committed ones
    heading = "\n## inspired · rec · standard\n"
    assert markdown.count(heading) == (REPO_ROOT / "results" / "LEADERBOARD.md").read_text().count(heading) == 1
