"""The ``slurm`` executor: a grid as one Slurm job array through submitit.

submitit pickles each call into `folder` (which must be on a filesystem the compute nodes share) and
the result back; the driver polls, collects each `CellResult` and writes the record itself. With
``cluster: local`` (subprocesses) or ``cluster: debug`` (in this process) the same code runs without
Slurm, which is how the tests run it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from harness.api import Cell, CellResult, DataError


class SlurmExecutor:
    """Slurm settings map to submitit's: `partition`, `timeout_min`, `cpus_per_cell`, `gpus_per_cell`
    (None: one when the cells' device is cuda), `mem_gb` and `array_parallelism` (cells running at once)."""

    remote = True

    def __init__(self, folder: str = "slurm-jobs", cluster: str | None = None, partition: str | None = None,
                 timeout_min: int = 240, cpus_per_cell: int = 1, gpus_per_cell: int | None = None,
                 mem_gb: float | None = None, array_parallelism: int = 64, poll_seconds: float = 2.0):
        if cluster not in (None, "slurm", "local", "debug"):
            raise ValueError(f"executor 'slurm': cluster must be slurm, local or debug, got {cluster!r}")
        self.folder, self.cluster, self.partition = folder, cluster, partition
        self.timeout_min, self.cpus, self.gpus, self.mem_gb = timeout_min, cpus_per_cell, gpus_per_cell, mem_gb
        self.parallelism, self.poll = array_parallelism, poll_seconds

    def parameters(self, cells: Sequence[Cell]) -> dict[str, Any]:
        gpus = self.gpus if self.gpus is not None else int(any(c.device.startswith("cuda") for c in cells))
        parameters: dict[str, Any] = {"timeout_min": self.timeout_min, "cpus_per_task": self.cpus,
                                      "slurm_array_parallelism": self.parallelism, "name": "crs-bench"}
        if gpus:
            parameters["gpus_per_node"] = gpus
        if self.mem_gb is not None:
            parameters["mem_gb"] = self.mem_gb
        if self.partition is not None:
            parameters["slurm_partition"] = self.partition
        return parameters

    def map(self, run: Callable[[Cell], CellResult], cells: Sequence[Cell], *,
            data_dir: str | None) -> Iterator[CellResult]:
        import submitit

        if data_dir is not None and not Path(data_dir).is_dir():
            raise DataError(data_dir, None, None, "the data directory does not exist (the compute nodes read it at "
                            "the same path)")
        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        executor.update_parameters(**self.parameters(cells))
        jobs = executor.map_array(run, list(cells))  # one array job, one task per cell
        pending = dict(zip(jobs, cells))
        try:
            while pending:
                finished = [job for job in pending if job.done()]
                for job in finished:
                    cell = pending.pop(job)
                    try:
                        yield job.result()
                    except Exception as error:  # noqa: BLE001 - a failed array task is that cell's failure
                        text = str(error).strip().splitlines()
                        yield CellResult(cell.index, cell.run_id, error=f"Slurm job {job.job_id} failed: "
                                         f"{text[-1] if text else type(error).__name__}")
                if pending and not finished:
                    time.sleep(self.poll)
        finally:
            for job in pending:
                job.cancel(check=False)
