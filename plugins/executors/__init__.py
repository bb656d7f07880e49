"""Built-in grid executors (kind ``executors``): ``local`` (one cell after another in this process, the
default), ``ray`` (each cell a Ray task) and ``slurm`` (Slurm job arrays through submitit).

Factories are registered by name, so neither Ray nor submitit is imported until a grid uses them.
"""
from __future__ import annotations

from harness.api import hookimpl


@hookimpl
def crs_bench_register_executors(registry) -> None:
    registry.add("local", "plugins.executors.local:LocalExecutor",
                 "one cell after another in this process (the default)")
    registry.add("ray", "plugins.executors.ray:RayExecutor",
                 "each grid cell a Ray task declaring its CPUs and GPUs; the driver writes the records")
    registry.add("slurm", "plugins.executors.slurm:SlurmExecutor",
                 "Slurm job arrays through submitit (cluster=local or debug runs them on this machine)")
