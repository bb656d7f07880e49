"""Issue 18, discoverability: `bench plugins NAME` shows a component's description, origin, parameters
(types and defaults from the factory signature), requirements and capabilities; `--json` includes the
parameters; `--dry-run` shows the resolved parameters; `bench run --help` names defaults and choices."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_plugins_name_shows_parameters_types_and_defaults(run_bench):
    code, out, err = run_bench("plugins", "kbrd-cos")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "model 'kbrd-cos' (version 1)"
    assert "  origin:     builtin:plugins.models (crs-bench 0.1.0)" in lines
    assert "    dim: int (default 128)" in lines
    assert "    max_context_entities: int | None (default None)" in lines
    assert "  provides:   cosine_head" in lines and "  requires:   -" in lines
    assert "  set with:   --model kbrd-cos --set model.params.KEY=VALUE" in lines


def test_plugins_name_of_a_loss_and_a_metric_family(run_bench):
    code, out, _ = run_bench("plugins", "ldam")
    assert code == 0 and out.startswith("loss 'ldam' (version 1)\n")
    assert "  requires:   cosine_head, item_counts" in out.splitlines()
    code, out, _ = run_bench("plugins", "longtail")
    assert code == 0
    assert "    pwp_beta: float (default 0.5)  PWP's popularity exponent" in out
    assert "  columns:    tail_recall@10, coverage@10, ild@10, arp@10, pwp@10" in out


def test_plugins_name_json_and_unknown_names(run_bench):
    code, out, _ = run_bench("plugins", "popularity", "--json")
    info = json.loads(out)
    assert info["params"] == [{"name": "counts", "type": "str", "default": "dialogues", "required": False}]
    assert info["origin"]["plugin"] == "plugins.baselines" and info["interface"] == "Recommender"
    code, out, err = run_bench("plugins", "populrity")
    assert code == 2 and "no component named 'populrity': did you mean 'popularity'?" in err
    code, out, err = run_bench("plugins", "ce", "--kind", "modles")
    assert code == 2 and "unknown component kind 'modles'" in err


def test_plugins_json_lists_every_component_with_its_parameters(run_bench):
    code, out, _ = run_bench("plugins", "--json")
    components = {(c["kind"], c["name"]): c for c in json.loads(out)}
    assert {"name": "label_smoothing", "type": "float", "default": 0.0, "required": False} in \
        components[("losses", "ce")]["params"]
    assert components[("metrics", "longtail")]["params"][0]["name"] == "pwp_beta"
    assert all("params" in c for c in components.values())


def test_plugins_json_reads_lazy_factories_without_importing_torch():
    probe = ("import sys, io, contextlib; from harness.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    main(['plugins', '--json', '--kind', 'losses']); main(['plugins', 'kbrd'])\n"
             "print('HEAVY', [m for m in ('torch', 'transformers', 'torch_geometric') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={"CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": ""}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_dry_run_shows_resolved_parameters(run_bench):
    code, out, err = run_bench("run", "--model", "popularity", "--dry-run", "--set", "metric_params.pwp_beta=0.25")
    assert code == 0
    [config] = json.loads(out)
    assert config["model"]["params"] == {"counts": "dialogues"}  # defaults filled in: stored and hashed
    assert "    model     popularity: counts='dialogues'" in err.splitlines()
    assert "    loss      ce: label_smoothing=0.0" in err.splitlines()
    assert "    metric    longtail: pwp_beta=0.25" in err.splitlines()


def test_run_help_names_defaults_choices_and_bench_plugins(run_bench, capsys):
    import pytest

    from harness.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "recommender (default: linear-context); one of: " in text and "popularity" in text
    assert "training loss (default: ce)" in text and "train.lr=0.001" in text
    assert "`bench plugins NAME` shows one with its parameters, types and defaults" in text
