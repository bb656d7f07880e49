"""The ``ray`` executor: each grid cell a Ray task that declares its CPUs and GPUs.

Why tasks return records instead of writing them: Ray workers may sit on machines without the results
directory; the driver collects each `CellResult` (record and per-sample rows) and writes it. The data
directory is another matter, since cells read it where they run, so it is probed on every alive node
before the first cell is submitted.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from harness.api import Cell, CellResult, DataError


def _call(run: Callable[[Cell], CellResult], cell: Cell, threads: int) -> CellResult:
    """The task body: torch gets the threads the task declared, not the whole machine."""
    import torch

    torch.set_num_threads(threads)
    return run(cell)


def _exists(path: str) -> bool:
    from pathlib import Path

    return Path(path).is_dir()


class RayExecutor:
    """`address`: a running cluster ("auto", "ray://host:10001"); None joins the instance this process
    already started or starts a local one with `workers` CPUs. `gpus_per_cell` None reserves one GPU for
    a cell whose device is cuda (or auto, when the cluster has GPUs), none otherwise."""

    remote = True

    def __init__(self, address: str | None = None, workers: int | None = None, cpus_per_cell: float = 1.0,
                 gpus_per_cell: float | None = None, max_retries: int = 0):
        if cpus_per_cell <= 0:
            raise ValueError(f"executor 'ray': cpus_per_cell must be positive, got {cpus_per_cell}")
        self.address, self.workers, self.cpus, self.gpus = address, workers, cpus_per_cell, gpus_per_cell
        self.max_retries = max_retries

    def gpus_for(self, cell: Cell, cluster_gpus: float) -> float:
        if self.gpus is not None:
            return self.gpus
        device = cell.device
        return 1.0 if device.startswith("cuda") or (device == "auto" and cluster_gpus > 0) else 0.0

    def map(self, run: Callable[[Cell], CellResult], cells: Sequence[Cell], *,
            data_dir: str | None) -> Iterator[CellResult]:
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, num_cpus=self.workers if self.address is None else None,
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
        refs: dict[Any, Cell] = {}
        try:
            check_data_dir(ray, data_dir)
            task = ray.remote(_call)
            shared = ray.put(run)
            cluster_gpus = ray.cluster_resources().get("GPU", 0.0)
            for cell in cells:
                options = task.options(num_cpus=self.cpus, num_gpus=self.gpus_for(cell, cluster_gpus),
                                       max_retries=self.max_retries, name=f"crs-bench:{cell.run_id}")
                refs[options.remote(shared, cell, max(1, int(self.cpus)))] = cell
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                for ref in done:
                    cell = refs.pop(ref)
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayError as error:  # the worker died, the task was cancelled
                        text = str(error).strip().splitlines()
                        yield CellResult(cell.index, cell.run_id,
                                         error=f"Ray task failed: {type(error).__name__}" + (f": {text[0]}" if text else ""))
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)
            if started_here:
                ray.shutdown()


def check_data_dir(ray: Any, data_dir: str | None) -> None:
    """The data directory on every alive node, probed by a zero-CPU task pinned to each; one line naming
    the nodes that lack it."""
    if data_dir is None:
        return
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(_exists)
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    answers = ray.get([probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                       .remote(data_dir) for node in nodes])
    missing = [node.get("NodeManagerAddress", node["NodeID"]) for node, ok in zip(nodes, answers) if not ok]
    if missing:
        raise DataError(data_dir, None, None, f"the data directory does not exist on Ray node(s) {', '.join(missing)}: "
                        "put the datasets there (the same path on every node) or pass --data-dir")
