"""Issue 18, the error boundary: whatever plugin code raises during a run is one line naming the
component, its plugin, the stage and the exception, with exit 2; ``--traceback`` shows the trace; a NaN
loss or metric is caught where it is produced; a failed run keeps its checkpoint only when resuming makes
sense and otherwise leaves nothing behind, and never touches other records or the leaderboard."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY = ["--set", "dataset.params.num_items=80", "--set", "dataset.params.train_dialogues=60",
        "--set", "dataset.params.valid_dialogues=20", "--set", "dataset.params.test_dialogues=20"]

# Components and hooks that fail on demand: CRS_BENCH_TEST_FAULT names the failure (read at call time).
FAULTY = '''
import os

import torch

from harness.api import HIGHER, LogitsTraining, MetricSpec, hookimpl


def fault():
    return os.environ.get("CRS_BENCH_TEST_FAULT", "")


class Model(LogitsTraining, torch.nn.Module):
    trainable = True

    def __init__(self, ctx, decay=0.5):
        super().__init__()
        if fault() == "build":
            raise ValueError("bad build")
        self.n = ctx.dataset.num_items
        self.bias = torch.nn.Parameter(torch.zeros(self.n))
        self.decay = decay * 2

    def make_batch(self, split, samples):
        return len(samples)

    def forward(self, batch):
        if fault() == "step":
            raise RuntimeError("forward exploded")
        return self.bias.expand(batch, self.n)

    def scores(self, batch):
        if fault() == "predict":
            raise IndexError("scores broke")
        return self.bias.detach().expand(batch, self.n)


def build_loss(ctx):
    def loss(logits, labels):
        if fault() == "loss-raises":
            raise ArithmeticError("loss overflow")
        if fault() == "detached":  # torch raises in backward(), where no plugin frame is on the stack
            return torch.nn.functional.cross_entropy(logits.detach(), labels)
        if fault() == "nan" or (fault() == "nan-epoch2" and os.path.exists(os.environ["CRS_BENCH_TEST_MARKER"])):
            return (logits * float("nan")).sum()
        return torch.nn.functional.cross_entropy(logits, labels)
    return loss


class Metric:
    def compute(self, lists, ctx):
        if fault() == "metric":
            raise ZeroDivisionError("metric divided by zero")
        if fault() == "metric-nan" and lists.n_samples > 0 and ctx.num_items == 80:
            return {"faulty@10": float("nan")}
        return {"faulty@10": 0.5}


class Augmenter:
    def __init__(self, ctx):
        pass

    def augment(self, train, rng):
        if fault() == "augment":
            raise LookupError("no dialogue to copy")
        return []

    def statistics(self):
        return {}


@hookimpl
def crs_bench_register_models(registry):
    registry.add("faulty", Model, "A model failing on demand (test only).")


@hookimpl
def crs_bench_register_losses(registry):
    registry.add("faulty-loss", build_loss, "A loss failing on demand (test only).")


@hookimpl
def crs_bench_register_augmenters(registry):
    registry.add("faulty-augmenter", Augmenter, "An augmenter failing on demand (test only).")


@hookimpl
def crs_bench_register_metrics(registry):
    registry.add("faulty-metric", Metric, "A metric failing on demand (test only).",
                 spec=MetricSpec("rec", {"faulty@*": HIGHER}))


@hookimpl
def crs_bench_run_start(run):
    if fault() == "run-start":
        raise RuntimeError("observer cannot start")


@hookimpl
def crs_bench_epoch_end(run, epoch, metrics):
    if fault() == "epoch":
        raise RuntimeError("observer failed")
    if fault() == "nan-epoch2":
        open(os.environ["CRS_BENCH_TEST_MARKER"], "w").close()


@hookimpl
def crs_bench_record_ready(record):
    if fault() == "record":
        raise KeyError("extra")
'''


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def faulty(tmp_path):
    plugin = tmp_path / "faulty_plugin.py"
    plugin.write_text(FAULTY)
    return plugin


@pytest.fixture
def baseline(run_bench, tmp_path, faulty):
    """A results directory holding one finished run and its leaderboard: every failure must leave it as is."""
    results = tmp_path / "results"
    assert run_bench("run", "--model", "popularity", "--quiet", "--plugin", str(faulty), *TINY, results=results)[0] == 0
    assert run_bench("leaderboard", "--plugin", str(faulty), results=results)[0] == 0
    return results, snapshot(results)


def fail(run_bench, monkeypatch, faulty, fault, *args, results=None):
    monkeypatch.setenv("CRS_BENCH_TEST_FAULT", fault)
    code, out, err = run_bench("run", "--plugin", str(faulty), "--quiet", *TINY, *args, results=results)
    monkeypatch.delenv("CRS_BENCH_TEST_FAULT")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), err
    return lines[0][len("bench: error: "):]


TRAINED = ["--model", "faulty", "--loss", "faulty-loss", "--epochs", "2"]


@pytest.mark.parametrize("fault, args, message", [
    ("build", TRAINED, "model 'faulty' (path:{plugin}) failed in build: ValueError: bad build; nothing was kept"),
    ("augment", ["--model", "popularity", "--augmenter", "faulty-augmenter"],
     "augmenter 'faulty-augmenter' (path:{plugin}) failed in augment: LookupError: no dialogue to copy; nothing was kept"),
    ("step", TRAINED, "model 'faulty' (path:{plugin}) failed in train step (epoch 1, step 0): RuntimeError: "
                      "forward exploded; nothing was kept"),
    ("loss-raises", TRAINED, "loss 'faulty-loss' (path:{plugin}) failed in train step (epoch 1, step 0): "
                             "ArithmeticError: loss overflow; nothing was kept"),
    ("nan", TRAINED, "loss 'faulty-loss' (path:{plugin}) failed in train step (epoch 1, step 0): non-finite training "
                     "loss nan (model 'faulty'); lower train.lr or check the loss for log(0) or division by zero; "
                     "nothing was kept"),
    ("detached", TRAINED, "model 'faulty' (path:{plugin}) or loss 'faulty-loss' (path:{plugin}) failed in train step "
                          "(epoch 1, step 0): RuntimeError: element 0 of tensors does not require grad and does not "
                          "have a grad_fn; nothing was kept"),
    ("predict", TRAINED, "model 'faulty' (path:{plugin}) failed in predict (valid): IndexError: scores broke; "
                         "nothing was kept"),
    ("metric", TRAINED, "metric 'faulty-metric' (path:{plugin}) failed in metric compute (pre-training check, "
                        "standard): ZeroDivisionError: metric divided by zero; nothing was kept"),
    ("metric-nan", TRAINED, "metric 'faulty-metric' (path:{plugin}) failed in metric compute (valid, standard): "
                            "produced nan for 'faulty@10' (a family returns None for an undefined value); "
                            "nothing was kept"),
    ("run-start", TRAINED, "plugin '{plugin}' (--plugin) failed in run start hook (crs_bench_run_start): "
                           "RuntimeError: observer cannot start; nothing was kept"),
])
def test_a_failure_in_plugin_code_is_one_line_and_leaves_nothing(run_bench, monkeypatch, faulty, baseline, fault,
                                                                 args, message):
    results, before = baseline
    line = fail(run_bench, monkeypatch, faulty, fault, *args, results=results)
    assert line == message.format(plugin=faulty)
    assert snapshot(results) == before  # no run directory, no checkpoint, other records and leaderboard untouched


def test_a_failure_after_a_checkpoint_removes_the_checkpoints_when_not_resumable(run_bench, monkeypatch, faulty,
                                                                                  baseline, tmp_path):
    results, before = baseline
    monkeypatch.setenv("CRS_BENCH_TEST_MARKER", str(tmp_path / "epoch-1-done"))
    line = fail(run_bench, monkeypatch, faulty, "nan-epoch2", *TRAINED, results=results)
    assert line.startswith("loss 'faulty-loss' (path:") and "failed in train step (epoch 2, step " in line
    assert line.endswith("non-finite training loss nan (model 'faulty'); lower train.lr or check the loss for log(0) "
                         "or division by zero; its checkpoints were removed (the failure is not resumable)")
    assert (tmp_path / "epoch-1-done").exists()  # epoch 1 was checkpointed before the failure
    assert snapshot(results) == before


def test_a_failed_run_in_a_fresh_directory_leaves_no_directory(run_bench, monkeypatch, faulty, tmp_path):
    fail(run_bench, monkeypatch, faulty, "step", *TRAINED)
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("fault, stage", [
    ("epoch", "epoch hook (crs_bench_epoch_end, epoch 1): RuntimeError: observer failed"),
    ("record", "record hook (crs_bench_record_ready): KeyError: 'extra'"),
])
def test_a_resumable_failure_keeps_the_checkpoint_for_resume(run_bench, monkeypatch, faulty, baseline, fault, stage):
    results, before = baseline
    line = fail(run_bench, monkeypatch, faulty, fault, *TRAINED, results=results)
    new = [p for p in (results / "runs").iterdir() if p.name.startswith("synthetic__faulty")]
    assert len(new) == 1
    run_dir = new[0]
    assert line == (f"plugin '{faulty}' (--plugin) failed in {stage}; the last epoch checkpoint in {run_dir} is kept: "
                    "fix it and rerun the same command with --resume")
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "record.json").exists()
    assert {k: v for k, v in snapshot(results).items() if not k.startswith(f"runs/{run_dir.name}")} == before
    code, out, err = run_bench("run", "--plugin", str(faulty), "--quiet", *TINY, *TRAINED, "--resume", results=results)
    assert code == 0, err
    assert (run_dir / "record.json").is_file() and not (run_dir / "checkpoint.pt").exists()


def test_a_checkpoint_that_cannot_be_written_is_the_harness_write_not_the_model(run_bench, monkeypatch, faulty,
                                                                                 tmp_path):
    import errno

    import harness.training as training

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(training, "write_atomic", full)
    code, out, err = run_bench("run", "--plugin", str(faulty), "--quiet", *TINY, *TRAINED)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "bench: error: cannot write checkpoint " in err and "checkpoint-best.pt: the disk is full; fix it and " \
        "rerun the same command with --resume" in err and "faulty" not in err.split("runs/")[0]


def test_traceback_shows_the_whole_trace(run_bench, monkeypatch, faulty):
    monkeypatch.setenv("CRS_BENCH_TEST_FAULT", "step")
    code, out, err = run_bench("run", "--plugin", str(faulty), "--quiet", *TINY, *TRAINED, "--traceback")
    assert code == 2
    assert "Traceback (most recent call last)" in err and "RuntimeError: forward exploded" in err
    assert "in forward" in err  # the plugin's own frame
    assert err.strip().splitlines()[-1].startswith("bench: error: model 'faulty'")


def test_a_lifecycle_observer_of_run_error_that_raises_does_not_mask_the_error(tmp_path, monkeypatch, faulty):
    from harness import hookimpl
    from harness.boundary import PluginFailure
    from harness.config import resolve
    from harness.plugin_manager import load_plugins
    from harness.runner import execute

    class Broken:
        @hookimpl
        def crs_bench_run_error(self, run, error):
            raise RuntimeError("the observer is broken too")

    plugins = load_plugins(extra=[str(faulty)], autoload=False)
    plugins.manager.register(Broken(), name="broken-observer")
    config = resolve(flags={"model": "faulty", "loss": "faulty-loss", "train.epochs": 1},
                     overrides=[a for a in TINY if a != "--set"])[0]
    monkeypatch.setenv("CRS_BENCH_TEST_FAULT", "step")
    with pytest.raises(PluginFailure, match="forward exploded") as caught:
        execute(config, plugins, results_dir=tmp_path / "r", cache_dir=tmp_path / "c", quiet=True)
    assert caught.value.stage == "train step (epoch 1, step 0)" and not caught.value.resumable


# --- loss on a model that does not train -------------------------------------------------------------


def test_a_loss_without_effect_is_refused(run_bench, tmp_path):
    code, out, err = run_bench("run", "--model", "popularity", "--loss", "focal", "--quiet", *TINY)
    assert code == 2 and err.strip() == (
        "bench: error: loss 'focal' has no effect on model 'popularity': it is not trainable and the loss does not "
        "adjust scores, so the result would be the 'ce' row under another name; use --loss ce")
    assert not (tmp_path / "results").exists()
    code, out, err = run_bench("run", "--model", "linear-context", "--loss", "focal", "--epochs", "0", "--quiet", *TINY)
    assert code == 2 and "has no effect on model 'linear-context': the run trains for 0 epochs" in err
    # a loss that adjusts the test scores changes a deterministic model's ranking: allowed
    code, out, err = run_bench("run", "--model", "popularity", "--loss", "logit-adjust", "--quiet",
                               "--set", "loss.params.form=posthoc", *TINY)
    assert code == 0, err


# --- parameters of unannotated factories, plugin fingerprints ------------------------------------------


def test_an_unannotated_parameter_is_checked_against_its_default(run_bench, faulty):
    code, out, err = run_bench("run", "--plugin", str(faulty), "--model", "faulty", "--set", "model.params.decay=abc",
                               "--dry-run")
    assert code == 2 and err.strip() == "bench: error: model 'faulty' parameter 'decay' expects float, got 'abc'"


def test_every_plugin_is_fingerprinted_in_the_record(run_bench, tmp_path, faulty):
    results = tmp_path / "results"
    assert run_bench("run", "--model", "popularity", "--quiet", "--plugin", str(faulty), *TINY, results=results)[0] == 0
    [path] = results.glob("runs/*/record.json")
    plugins = {row["name"]: row for row in json.loads(path.read_text())["plugins"]}
    assert all(row["fingerprint"].startswith("sha256:") and len(row["fingerprint"]) == 23 for row in plugins.values())
    faulty.write_text(FAULTY + "\n# a change\n")
    assert run_bench("run", "--model", "repeat-context", "--quiet", "--plugin", str(faulty), *TINY,
                     results=results)[0] == 0
    changed = {json.loads(p.read_text())["config"]["model"]["name"]: json.loads(p.read_text())
               for p in results.glob("runs/*/record.json")}["repeat-context"]
    after = {row["name"]: row for row in changed["plugins"]}
    assert after[str(faulty)]["fingerprint"] != plugins[str(faulty)]["fingerprint"]
    assert after["plugins.baselines"]["fingerprint"] == plugins["plugins.baselines"]["fingerprint"]
