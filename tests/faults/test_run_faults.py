"""Faults around a run's files (issue rows 9-15): kills between writes, resuming on changed data, an
interrupted grid, two processes on one run, planted checkpoints, unwritable or full results directories,
damaged samples files. Where timing matters, a fault-injection plugin (`--plugin FILE`) kills the process
with SIGKILL at a chosen write."""
from __future__ import annotations

import errno
import gzip
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.results import PENDING_SUFFIX, RECORD_FILE, SAMPLES_FILE, read_record, read_samples

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--set", "dataset.params.train_dialogues=120", "--set", "dataset.params.valid_dialogues=30",
         "--set", "dataset.params.test_dialogues=30", "--set", "dataset.params.num_items=80"]
FLAGS = ["--model", "linear-context", "--epochs", "2", *SMALL]

# Kills the process right after `write_atomic` wrote the file named by CRS_BENCH_TEST_KILL_AFTER ("pending":
# the staged samples of a rerun; "record": its record). With CRS_BENCH_TEST_SHIFT set, the predict stage
# rolls every top list by one place, so the rerun's samples differ from the first run's under the same id.
KILL_PLUGIN = '''
import os, signal

import numpy as np

import harness.results as results
from harness.api import hookimpl
from harness.evaluation import rank_split

_write = results.write_atomic


def _killing_write(path, data):
    _write(path, data)
    target = os.environ.get("CRS_BENCH_TEST_KILL_AFTER", "")
    if (target == "pending" and path.name.endswith(results.PENDING_SUFFIX)) or \\
            (target == "record" and path.name == results.RECORD_FILE):
        os.kill(os.getpid(), signal.SIGKILL)


@hookimpl
def crs_bench_record_ready(record):
    results.write_atomic = _killing_write


@hookimpl
def crs_bench_predict(run, split, settings):
    if not os.environ.get("CRS_BENCH_TEST_SHIFT"):
        return None
    lists = rank_split(run.model, split, 256, settings=settings)
    for ranked in lists.values():
        ranked.top = np.roll(ranked.top, 1, axis=1)
    return lists
'''


def bench(results: Path, cache: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`bench` in a child process (a SIGKILL must not take the test with it)."""
    command = [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main(sys.argv[1:]))",
               *args[:1], "--results-dir", str(results), "--cache-dir", str(cache), *args[1:]]
    environment = {**os.environ, "CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(REPO),
                   "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)


def small_run_id() -> str:
    """The run id `bench run *FLAGS` gets (its config with the components' defaults filled in)."""
    from harness.config import config_hash, resolve
    from harness.plugin_manager import load_plugins
    from harness.results import run_id_for
    from harness.runner import resolve_defaults

    [config] = resolve(flags={"model": "linear-context", "train.epochs": 2},
                       overrides=[value for value in SMALL if value != "--set"])
    config = resolve_defaults(load_plugins(autoload=False).registries, config)
    return run_id_for(config, config_hash(config))


def only_run(results: Path) -> Path:
    [run_dir] = (results / "runs").iterdir()
    return run_dir


# --- 9. a kill between the samples and the record of a rerun ---------------------------------


@pytest.mark.parametrize("kill_after, survivor", [("pending", "old"), ("record", "new")])
def test_a_kill_between_samples_and_record_leaves_one_complete_run(tmp_path, kill_after, survivor):
    plugin = tmp_path / "kill.py"
    plugin.write_text(KILL_PLUGIN)
    results, cache = tmp_path / "results", tmp_path / "cache"
    first = bench(results, cache, "run", *FLAGS, "--plugin", str(plugin))
    assert first.returncode == 0, first.stderr
    run_dir = only_run(results)
    old_record, old_rows = read_record(run_dir / RECORD_FILE), read_samples(run_dir)

    killed = bench(results, cache, "run", *FLAGS, "--plugin", str(plugin),
                   env={"CRS_BENCH_TEST_KILL_AFTER": kill_after, "CRS_BENCH_TEST_SHIFT": "1"})
    assert killed.returncode == -signal.SIGKILL
    assert list(run_dir.glob(f"*{PENDING_SUFFIX}"))  # the staged samples are still beside the run

    record = read_record(run_dir / RECORD_FILE)
    rows = read_samples(run_dir)  # verified against the record's hash (and, after a record kill, completed)
    if survivor == "old":
        assert record == old_record and rows == old_rows
    else:
        assert record["artifacts"]["samples"]["sha256"] != old_record["artifacts"]["samples"]["sha256"]
        assert rows != old_rows and not list(run_dir.glob(f"*{PENDING_SUFFIX}"))
    check = bench(results, cache, "rescore", str(run_dir), "--check")
    assert check.returncode == 0, check.stderr  # metrics recomputed from the surviving samples match its record
    board = bench(results, cache, "leaderboard")
    assert board.returncode == 0, board.stderr

    again = bench(results, cache, "run", *FLAGS, "--plugin", str(plugin))  # the next run removes orphans
    assert again.returncode == 0, again.stderr
    assert not list(run_dir.glob(f"*{PENDING_SUFFIX}")) and not list(run_dir.glob(".*.tmp"))


def test_an_edited_samples_file_is_refused_by_every_reader(run_bench, tmp_path):
    assert run_bench("run", *FLAGS)[0] == 0
    run_dir = only_run(tmp_path / "results")
    rows = read_samples(run_dir)
    rows[0]["top"] = list(reversed(rows[0]["top"]))  # a quiet edit: still valid gzip and JSON
    (run_dir / SAMPLES_FILE).write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    for command in (["leaderboard", "--check"], ["leaderboard"], ["rescore", str(run_dir), "--check"]):
        code, out, err = run_bench(*command)
        assert code == 2 and len(err.strip().splitlines()) == 1, (command, err)
        assert f"{run_dir / SAMPLES_FILE}: SHA-256" in err and "rerun the config" in err


# --- 10. --resume after the data changed ------------------------------------------------------

DRIFT_PLUGIN = '''
import json, os

from harness.api import hookimpl
from plugins.synthetic import build_synthetic


def files(data_dir):
    return [data_dir / "drift.json"]


def build(data_dir, **params):
    seed = json.loads((data_dir / "drift.json").read_text())["seed"]
    return build_synthetic(None, num_items=80, train_dialogues=120, valid_dialogues=30, test_dialogues=30, seed=seed)


@hookimpl
def crs_bench_register_datasets(registry):
    registry.add("drifting", build, "synthetic dialogues whose seed is read from drift.json", version="1",
                 input_files=files)


@hookimpl
def crs_bench_epoch_end(run, epoch, metrics):
    if epoch == int(os.environ.get("CRS_BENCH_TEST_STOP_AT", "0")):
        raise KeyboardInterrupt
'''


def test_resume_refuses_a_checkpoint_of_other_data(run_bench, tmp_path, monkeypatch):
    plugin, data = tmp_path / "drift.py", tmp_path / "data"
    plugin.write_text(DRIFT_PLUGIN)
    data.mkdir()
    (data / "drift.json").write_text('{"seed": 1}')
    args = ["run", "--plugin", str(plugin), "--dataset", "drifting", "--data-dir", str(data),
            "--model", "linear-context", "--epochs", "4"]
    monkeypatch.setenv("CRS_BENCH_TEST_STOP_AT", "2")
    assert run_bench(*args)[0] == 130
    run_dir = only_run(tmp_path / "results")
    assert (run_dir / "checkpoint.pt").is_file()

    (data / "drift.json").write_text('{"seed": 2}')  # the data changes under the interrupted run
    monkeypatch.setenv("CRS_BENCH_TEST_STOP_AT", "0")
    code, out, err = run_bench(*args, "--resume")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{run_dir / 'checkpoint.pt'}: written for dataset fingerprint" in err
    assert "(the data changed): rerun without --resume" in err
    assert not (run_dir / RECORD_FILE).exists() and (run_dir / "checkpoint.pt").is_file()  # nothing lost

    assert run_bench(*args)[0] == 0  # without --resume: trained from scratch on the new data
    assert read_record(run_dir / RECORD_FILE)["training"]["epochs_run"] == 4


# --- 11. --resume on an interrupted grid ------------------------------------------------------


def test_resume_on_a_grid_skips_complete_runs(run_bench, tmp_path):
    recipe = tmp_path / "grid.yaml"
    recipe.write_text(textwrap.dedent("""\
        dataset:
          name: synthetic
          params: {train_dialogues: 120, valid_dialogues: 30, test_dialogues: 30, num_items: 80}
        train: {epochs: 2}
        grid:
          model: [popularity, linear-context]
        """))
    assert run_bench("run", str(recipe))[0] == 0
    runs = sorted((tmp_path / "results" / "runs").iterdir())
    stamps = {run: (run / RECORD_FILE).stat().st_mtime_ns for run in runs}
    (runs[1] / RECORD_FILE).unlink()  # as if the grid had been interrupted in its second run
    code, out, err = run_bench("run", str(recipe), "--resume")
    assert code == 0, err
    assert err.count("complete, skipped (--resume)") == 1 and runs[0].name in err
    assert (runs[0] / RECORD_FILE).stat().st_mtime_ns == stamps[runs[0]]  # not rewritten
    assert (runs[1] / RECORD_FILE).is_file()


# --- 12. two processes on one run -------------------------------------------------------------


def test_a_second_process_on_the_same_run_is_refused_naming_the_holder(run_bench, tmp_path):
    run_dir = tmp_path / "results" / "runs" / small_run_id()
    run_dir.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; f = open(sys.argv[1], 'a+'); "
         "fcntl.flock(f, fcntl.LOCK_EX); f.write(f'{os.getpid()}\\n'); f.flush(); print('held', flush=True); "
         "time.sleep(60)", str(run_dir / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, out, err = run_bench("run", *FLAGS)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"run directory {run_dir} is in use by process {holder.pid}" in err
    assert run_bench("run", *FLAGS)[0] == 0  # the kernel dropped the lock with its holder


# --- 13. planted checkpoint -------------------------------------------------------------------


class Planted:
    """Unpickling this runs code: the attack a `weights_only=False` load allows."""

    def __reduce__(self):
        return (Path.write_text, (Path(os.environ["CRS_BENCH_TEST_PWNED"]), "code ran"))


def test_a_planted_checkpoint_runs_no_code(run_bench, tmp_path, monkeypatch):
    import torch

    run_dir = tmp_path / "results" / "runs" / small_run_id()
    run_dir.mkdir(parents=True)
    marker = tmp_path / "pwned"
    monkeypatch.setenv("CRS_BENCH_TEST_PWNED", str(marker))
    torch.save({"model": Planted()}, run_dir / "checkpoint.pt")
    code, out, err = run_bench("run", *FLAGS, "--resume")
    assert not marker.exists()
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{run_dir / 'checkpoint.pt'}: not a safe checkpoint" in err and "delete it" in err


def test_checkpoints_are_safe_to_load_and_carry_their_identity(tmp_path, plugins):
    import torch

    from harness import hookimpl
    from harness.config import config_hash, resolve
    from harness.plugin_manager import load_plugins
    from harness.runner import execute, resolve_defaults

    interrupting = load_plugins(autoload=False)

    class Stop:
        @hookimpl
        def crs_bench_epoch_end(self, run, epoch, metrics):
            raise KeyboardInterrupt

    interrupting.manager.register(Stop(), name="stop")
    [config] = resolve(flags={"model": "linear-context", "train.epochs": 2},
                       overrides=[value for value in SMALL if value != "--set"])
    config = resolve_defaults(plugins.registries, config)
    with pytest.raises(KeyboardInterrupt):
        execute(config, interrupting, results_dir=tmp_path / "r", cache_dir=tmp_path / "c", quiet=True)
    [run_dir] = (tmp_path / "r" / "runs").iterdir()
    for name in ("checkpoint.pt", "checkpoint-best.pt"):
        saved = torch.load(run_dir / name, weights_only=True)  # raises on anything but tensors and data
        assert saved["identity"]["config_hash"] == config_hash(config)
        assert len(saved["identity"]["dataset_fingerprint"]) == 64


def test_the_dataset_and_embedding_caches_hold_no_pickles(tmp_path, monkeypatch):
    """The dataset cache is gzipped JSON (row 13's cache half is in test_data_faults); the text-embedding
    cache is npz read with allow_pickle=False: a planted pickle shard is a miss, never code."""
    from plugins.models.text_encoder import EmbeddingStore

    monkeypatch.setenv("CRS_BENCH_TEST_PWNED", str(tmp_path / "pwned"))
    store_dir = tmp_path / "emb"
    store_dir.mkdir()
    with open(store_dir / "planted.npz", "wb") as stream:
        pickle.dump(Planted(), stream)
    store = EmbeddingStore(store_dir)
    assert not (tmp_path / "pwned").exists() and len(store.vectors) == 0


# --- 14. unwritable or full results directory -------------------------------------------------


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_an_unwritable_results_directory_is_found_before_training(run_bench, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    results.chmod(0o555)
    try:
        code, out, err = run_bench("run", *FLAGS)
    finally:
        results.chmod(0o755)
    assert code == 2 and "permission denied; fix it and rerun; nothing was trained" in err


def test_an_unwritable_run_directory_is_found_before_training(run_bench, tmp_path, monkeypatch):
    """Root ignores permissions, so the probe's failure is injected: it must stop the run before any data
    is loaded."""
    import harness.run_directory as run_directory
    import harness.loading as loading

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "results" / "runs"))

    loaded = []
    monkeypatch.setattr(run_directory.Path, "mkdir", refuse)
    monkeypatch.setattr(loading, "load", lambda *a, **k: loaded.append(1))
    code, out, err = run_bench("run", *FLAGS)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"cannot write {tmp_path / 'results' / 'runs'}: permission denied; fix it and rerun" in err
    assert loaded == []


def test_a_full_disk_at_the_record_names_the_path_and_keeps_the_checkpoint(run_bench, tmp_path, monkeypatch):
    import harness.results as results

    original = results.write_atomic

    def full(path, data):
        if path.name.endswith(PENDING_SUFFIX):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        original(path, data)

    monkeypatch.setattr(results, "write_atomic", full)
    code, out, err = run_bench("run", *FLAGS, "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    run_dir = only_run(tmp_path / "results")
    assert "the disk is full; the trained checkpoint is kept" in err and "--resume" in err
    assert (run_dir / "checkpoint-best.pt").is_file() and not (run_dir / RECORD_FILE).exists()

    monkeypatch.setattr(results, "write_atomic", original)
    code, out, err = run_bench("run", *FLAGS, "--resume")  # the space is back: written without training
    assert code == 0, err
    record = read_record(run_dir / RECORD_FILE)
    assert record["training"]["epochs_run"] == 2 and not (run_dir / "checkpoint-best.pt").exists()


def test_orphan_temporary_files_are_removed_on_the_next_run(run_bench, tmp_path):
    assert run_bench("run", *FLAGS)[0] == 0
    run_dir = only_run(tmp_path / "results")
    orphans = [run_dir / ".record.json.abc123.tmp", run_dir / f"{SAMPLES_FILE}.0123456789abcdef{PENDING_SUFFIX}"]
    for orphan in orphans:
        orphan.write_bytes(b"half a write")
    assert run_bench("run", *FLAGS)[0] == 0
    assert not any(orphan.exists() for orphan in orphans)


def test_the_popularity_plot_is_written_atomically(run_bench, tmp_path, monkeypatch):
    import harness.data_info as data_info

    written = []
    monkeypatch.setattr(data_info, "write_atomic", lambda path, data: written.append((path, data[:8])))
    code, out, err = run_bench("data", "info", "synthetic", "--plot", str(tmp_path / "pop.png"))
    assert code == 0, err
    assert written == [(tmp_path / "pop.png", b"\x89PNG\r\n\x1a\n")]


def test_credentials_in_urls_are_redacted_in_records(tmp_path, plugins):
    from harness.config import config_hash
    from harness.provenance import redact

    secret = {"augmenter": {"params": {"base_url": "https://alice:s3cret@llm.example/v1?api_key=k123&x=1"}}}
    assert redact(secret) == {"augmenter": {"params": {"base_url": "https://***@llm.example/v1?api_key=***&x=1"}}}
    assert config_hash(secret) == config_hash(redact(secret))  # recomputable from the stored config


def test_a_run_record_never_holds_url_credentials(run_bench, tmp_path):
    plugin = tmp_path / "endpoint.py"
    plugin.write_text(textwrap.dedent('''
        from harness.api import hookimpl

        class Endpoint:
            def __init__(self, ctx, base_url="http://localhost"):
                self.base_url = base_url
            def augment(self, dialogues, rng):
                return []
            def statistics(self):
                return {"endpoint": self.base_url}

        @hookimpl
        def crs_bench_register_augmenters(registry):
            registry.add("endpoint", Endpoint, "adds nothing; reports its endpoint")
        '''))
    code, out, err = run_bench("run", *FLAGS, "--plugin", str(plugin), "--augmenter", "endpoint",
                               "--set", "augmenter.params.base_url=https://bob:hunter2@llm.example/v1")
    assert code == 0, err
    text = (only_run(tmp_path / "results") / RECORD_FILE).read_text()
    assert "hunter2" not in text and "https://***@llm.example/v1" in text


# --- 15. truncated samples file ---------------------------------------------------------------


def test_a_truncated_samples_file_is_one_line_from_the_leaderboard(run_bench, tmp_path):
    assert run_bench("run", *FLAGS)[0] == 0
    assert run_bench("run", *FLAGS, "--model", "popularity")[0] == 0
    run_dir = sorted((tmp_path / "results" / "runs").iterdir())[0]
    samples = run_dir / SAMPLES_FILE
    samples.write_bytes(samples.read_bytes()[: samples.stat().st_size // 2])
    code, out, err = run_bench("leaderboard")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"bench: error: {samples}: SHA-256" in err
