"""Data-parallel runs: ``bench run --processes N`` (or ``accelerate launch`` / ``torchrun`` of the CLI, which
set the same RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT) trains one model in N processes.

Why the results match one process: every rank holds the same model (same seed), reads the same epoch order
and takes a strided share of each global batch (`shard`); its loss is weighted by its share of the batch,
and the gradients are summed over ranks (`sum_gradients`), which is the single-process gradient of the batch
mean, up to floating-point reduction order. Clipping and the optimizer step then run on equal gradients
everywhere. Evaluation is sharded by context and the top-50 lists are gathered by context position
(`gather_rows`), so no padded duplicate enters a metric. Rank 0 alone writes the record; the other ranks
run in a scratch results directory. The process group comes from Accelerate's `PartialState` (gloo on
CPU, NCCL on CUDA).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def current() -> World:
    """This process's place, from the launcher's environment (one process: rank 0 of 1)."""
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))


_STATE: list[Any] = []


def initialise(device: str) -> World:
    """Join the process group once (Accelerate's `PartialState`); a no-op for one process."""
    world = current()
    if world.size > 1 and not _STATE:
        from accelerate import PartialState

        _STATE.append(PartialState(cpu=not device.startswith("cuda")))
    return world


def accelerator_state(device: str) -> Any:
    """Accelerate's `PartialState` of this process (joining the group first when there are several)."""
    initialise(device)
    if not _STATE:
        from accelerate import PartialState

        _STATE.append(PartialState(cpu=not device.startswith("cuda")))
    return _STATE[0]


def shard(items: Sequence[Any], world: World) -> list[Any]:
    """This rank's strided share of a global batch or of a split's contexts."""
    return list(items[world.rank::world.size])


def sum_gradients(parameters: Sequence[Any]) -> None:
    """Sum every gradient over the ranks in one flat all-reduce. A parameter that has a gradient on some
    rank gets zeros where it has none (a rank whose share missed it); one with none anywhere stays None,
    as in one process (AdamW skips it)."""
    import torch
    import torch.distributed as dist

    present = torch.tensor([p.grad is not None for p in parameters], dtype=torch.uint8)
    dist.all_reduce(present, op=dist.ReduceOp.MAX)
    used = [p for p, flag in zip(parameters, present.tolist()) if flag]
    for p in used:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not used:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in used])
    dist.all_reduce(flat)
    offset = 0
    for p in used:
        count = p.grad.numel()
        p.grad.copy_(flat[offset:offset + count].view_as(p.grad))
        offset += count


def sum_value(value: float, device: str) -> float:
    """A float summed over the ranks (the step's loss, for logging and the finite check)."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=device if device.startswith("cuda") else "cpu")
    dist.all_reduce(tensor)
    return float(tensor.item())


def gather_rows(rows: dict[int, Any], world: World) -> dict[int, Any]:
    """Every rank's {position: row} merged on every rank (positions are disjoint by `shard`)."""
    import torch.distributed as dist

    parts: list[Any] = [None] * world.size
    dist.all_gather_object(parts, rows)
    merged: dict[int, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


def launch(argv: Sequence[str], processes: int) -> int:
    """Start `processes` copies of ``bench`` with `argv` (without --processes) on this machine and wait;
    when one rank fails the others are stopped (they would wait for it forever). The exit status is 0,
    or the first failing rank's."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    children = []
    for rank in range(processes):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(processes),
               "LOCAL_WORLD_SIZE": str(processes), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        children.append(subprocess.Popen([sys.executable, "-m", "harness.cli", *argv], env=env))
    import time

    try:
        while any(child.poll() is None for child in children):
            if any(child.returncode not in (None, 0) for child in children):
                break  # a failed rank leaves the others waiting in a collective: stop them
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        codes = [child.wait() for child in children]
    failed = [code for code in codes if code > 0]  # stopped ranks have negative codes
    return failed[0] if failed else (1 if any(codes) else 0)
