"""The `bench` command as a user meets it: errors are one line, help is fast and torch-free."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_unknown_model_is_one_line_with_suggestions(run_bench):
    code, out, err = run_bench("run", "--model", "populrity")
    assert code == 2
    assert err.strip() == "bench: error: unknown model 'populrity': did you mean 'popularity'?"
    code, out, err = run_bench("run", "--model", "nosuchmodel")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "unknown model 'nosuchmodel'" in err


def test_malformed_recipe_reports_file_and_line(run_bench, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model: popularity\ntrain: {epochs: 2\n")
    code, out, err = run_bench("run", str(recipe))
    assert code == 2 and f"{recipe}:3: malformed YAML" in err


def test_failing_plugin_is_named(run_bench, tmp_path):
    plugin = tmp_path / "exploding.py"
    plugin.write_text("from harness import hookimpl\n\n@hookimpl\ndef crs_bench_register_metrics(registry):\n"
                      "    raise RuntimeError('kaput')\n")
    code, out, err = run_bench("plugins", "--plugin", str(plugin))
    assert code == 2
    assert f"plugin '{plugin}' raised in crs_bench_register_metrics: RuntimeError: kaput" in err


def test_run_then_leaderboard_then_check(run_bench, tmp_path):
    results = tmp_path / "results"
    for model in ("popularity", "repeat-context"):
        code, out, err = run_bench("run", "--model", model, "--quiet", "--set", "dataset.params.num_items=80",
                                   results=results)
        assert code == 0, err
    assert run_bench("leaderboard", "--check", results=results)[0] == 1
    code, out, _ = run_bench("leaderboard", "--print", results=results)
    assert code == 0 and "| popularity | ce | none | 1 |" in out and "| repeat-context | ce | none | 1 |" in out
    assert run_bench("leaderboard", "--check", results=results)[0] == 0


def test_plugins_lists_components_with_origin(run_bench):
    code, out, _ = run_bench("plugins")
    assert code == 0
    assert "popularity" in out and "builtin crs-bench" in out and "synthetic" in out


def test_help_and_plugins_do_not_import_torch():
    probe = ("import sys; from harness.cli import main\n"
             "for argv in (['--help'], ['plugins']):\n"
             "    try: main(argv)\n"
             "    except SystemExit: pass\n"
             "heavy = [m for m in ('torch', 'transformers', 'torch_geometric', 'nltk', 'sacrebleu') if m in sys.modules]\n"
             "print('HEAVY', heavy)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={"CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": ""}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
