"""The ``local`` executor: today's behaviour, cells one after another in this process, writing in place."""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

from harness.api import Cell, CellResult


class LocalExecutor:
    """Sequential and in-process: a run's progress bars, checkpoints and ``--resume`` work as for one run."""

    remote = False

    def map(self, run: Callable[[Cell], CellResult], cells: Sequence[Cell], *,
            data_dir: str | None) -> Iterator[CellResult]:
        for cell in cells:
            yield run(cell)
