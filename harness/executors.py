"""Grids through an executor: a recipe's configs become `Cell`s, an `Executor` component runs them (here,
on Ray, as Slurm job arrays) and the driver writes what comes back.

Why the driver writes: a remote worker runs its cell in a private temporary results directory and returns
the record with its per-sample rows, so no worker needs the results directory, and a record appears only
through `write_run` on the machine that owns it. Cells whose complete record exists are skipped before
anything is submitted (always for a remote executor; under ``--resume`` for the local one, as before).
A failing cell is a one-line error in its `CellResult`; with ``keep_going`` the others carry on and the
caller reports the failures together.
"""
from __future__ import annotations

import functools
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .api.interfaces import Cell, CellResult, Executor
from .errors import RunError

DEFAULT_EXECUTOR = "local"


@dataclass(frozen=True)
class CellJob:
    """Everything a worker needs to run any cell of the grid besides the cell itself; plain, picklable
    values (absolute paths, so a worker's working directory does not matter)."""

    extra_plugins: tuple[str, ...] = ()
    disabled_plugins: tuple[str, ...] = ()
    data_dir: str | None = None
    cache_dir: str = ".cache"
    results_dir: str | None = None  # the local executor writes in place; None: a private temporary one
    resume: bool = False
    quiet: bool = True
    catch: bool = True  # a failing cell becomes its result's error (False: the local executor raises)


def job_for(extra: Sequence[str], disable: Sequence[str], data_dir: Path | None, cache_dir: Path, *,
            results_dir: Path | None, resume: bool, quiet: bool, catch: bool) -> CellJob:
    """A `CellJob` with absolute paths (``--plugin file.py`` included)."""
    def absolute(spec: str) -> str:
        return str(Path(spec).resolve()) if spec.endswith(".py") or Path(spec).is_file() else spec

    return CellJob(tuple(absolute(s) for s in extra), tuple(disable),
                   str(Path(data_dir).resolve()) if data_dir is not None else None, str(Path(cache_dir).resolve()),
                   str(Path(results_dir).resolve()) if results_dir is not None else None, resume, quiet, catch)


def _worker_plugins(job: CellJob) -> Any:
    """One plugin manager per worker process and plugin options (the environment's included): loading
    is not free, and a worker runs many cells."""
    import os

    from .plugin_manager import DISABLE_AUTOLOAD_ENV, DISABLE_ENV, PLUGINS_ENV

    environment = tuple(os.environ.get(name, "") for name in (DISABLE_AUTOLOAD_ENV, DISABLE_ENV, PLUGINS_ENV))
    return _load_plugins(job.extra_plugins, job.disabled_plugins, environment)


@functools.lru_cache(maxsize=4)
def _load_plugins(extra: tuple[str, ...], disable: tuple[str, ...], environment: tuple[str, ...]) -> Any:
    from .plugin_manager import load_plugins

    return load_plugins(extra=list(extra), disable=list(disable), tolerate=True)


def run_cell(job: CellJob, cell: Cell, plugins: Any = None) -> CellResult:
    """Run one cell where this is called; the executors ship this (bound to its job) to their workers,
    which load the plugins themselves (the local executor passes the driver's)."""
    from .cli import _user_errors
    from .results import read_samples
    from .runner import execute

    started = time.perf_counter()
    try:
        plugins = plugins if plugins is not None else _worker_plugins(job)
        data_dir = Path(job.data_dir) if job.data_dir is not None else None
        if job.results_dir is not None:
            record = execute(cell.config, plugins, results_dir=Path(job.results_dir), data_dir=data_dir,
                             cache_dir=Path(job.cache_dir), resume=job.resume, quiet=job.quiet)
            return CellResult(cell.index, cell.run_id, record, seconds=time.perf_counter() - started)
        with tempfile.TemporaryDirectory(prefix="crs-bench-cell-") as scratch:
            record = execute(cell.config, plugins, results_dir=Path(scratch), data_dir=data_dir,
                             cache_dir=Path(job.cache_dir), resume=False, quiet=job.quiet)
            rows = read_samples(Path(scratch) / "runs" / record["run_id"], record)
        return CellResult(cell.index, cell.run_id, record, rows, seconds=time.perf_counter() - started)
    except _user_errors() as error:
        if not job.catch:
            raise
        return CellResult(cell.index, cell.run_id, error=str(error).splitlines()[0] if str(error) else
                          type(error).__name__, seconds=time.perf_counter() - started)
    except Exception as error:  # noqa: BLE001 - a remote cell's bug must come back as text, not kill the grid
        if not job.catch:
            raise
        return CellResult(cell.index, cell.run_id, error=f"{type(error).__name__}: {error}".splitlines()[0],
                          seconds=time.perf_counter() - started)


def cells_for(configs: Sequence[dict[str, Any]]) -> list[Cell]:
    """The cells of resolved configs (factory defaults filled in), with the run ids `execute` will use."""
    from .config import config_hash
    from .results import run_id_for

    return [Cell(index, run_id_for(config, config_hash(config)), config) for index, config in enumerate(configs)]


def store(results_dir: Path, result: CellResult) -> Path:
    """Write a remote cell's record and samples into ``<results>/runs/<run_id>/``, atomically, under the
    run directory's lock."""
    from . import run_directory
    from .results import write_run

    assert result.record is not None and result.rows is not None
    run_dir = results_dir / "runs" / result.run_id
    run_directory.prepare(run_dir)
    lock = run_directory.RunLock(run_dir).acquire()
    try:
        run_directory.remove_orphans(run_dir)
        return write_run(run_dir, result.record, result.rows)
    finally:
        lock.release()


@dataclass
class GridOutcome:
    """What a grid did: the records in recipe order (skipped cells' stored ones included) and the failures."""

    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failures: list[CellResult] = field(default_factory=list)

    def summary(self) -> str:
        """The one line ``bench run`` ends with when cells failed."""
        shown = "; ".join(f"{f.run_id}: {f.error}" for f in self.failures)
        return f"{len(self.failures)} cell(s) failed: {shown}"


def run_grid(executor: Executor, cells: Sequence[Cell], job: CellJob, results_dir: Path, *, keep_going: bool,
             plugins: Any = None,
             on_record: Callable[[dict[str, Any]], None] = lambda record: None) -> GridOutcome:
    """Run `cells` through `executor`. Without `keep_going` the first failure stops the grid: the local
    executor's error propagates as it always has, a remote one becomes a `RunError` naming its cell (the
    executor cancels what is left). `plugins` (the driver's) serve an executor that is not remote."""
    from . import run_directory
    from .results import RECORD_FILE, read_record

    outcome = GridOutcome()
    pending = []
    for cell in cells:
        run_dir = results_dir / "runs" / cell.run_id
        if (executor.remote or job.resume) and run_directory.is_complete(run_dir):
            outcome.records[cell.index] = read_record(run_dir / RECORD_FILE)
            outcome.skipped.append(cell.run_id)
            why = "--resume" if job.resume else "its complete record exists"
            print(f"bench: {cell.run_id}: complete, skipped ({why})", file=sys.stderr)
            on_record(outcome.records[cell.index])
        else:
            pending.append(cell)
    if not pending:
        return outcome
    run = functools.partial(run_cell, job) if executor.remote else functools.partial(run_cell, job, plugins=plugins)
    results = executor.map(run, pending, data_dir=job.data_dir)
    try:
        for result in results:
            if result.error is not None:
                outcome.failures.append(result)
                print(f"bench: cell {result.index + 1}/{len(cells)} {result.run_id} failed: {result.error}",
                      file=sys.stderr)
                if not keep_going:
                    raise RunError(f"{result.run_id}: {result.error}" + (
                        f" ({len(pending) - 1} other cell(s) cancelled or left; --keep-going runs them)"
                        if len(pending) > 1 else ""))
                continue
            assert result.record is not None
            if executor.remote:
                store(results_dir, result)
            outcome.records[result.index] = result.record
            on_record(result.record)
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()  # a generator executor cancels what has not finished
    return outcome
