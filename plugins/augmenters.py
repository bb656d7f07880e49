"""Training-data augmenters. `none` is the identity; the LumiCRS family adds `random`, `template`,
`swap` and `pda` (see the LumiCRS plugin)."""
from __future__ import annotations

import random
from typing import Any, Sequence

from harness.api import hookimpl
from harness.api import RunContext
from harness.data import Dialogue


class NoAugmentation:
    """Adds nothing: the training dialogues are used as released."""

    def __init__(self, ctx: RunContext):
        pass

    def augment(self, train: Sequence[Dialogue], rng: random.Random) -> list[Dialogue]:
        return []

    def statistics(self) -> dict[str, Any]:
        return {"generated": 0, "filtered": 0, "accepted": 0}


@hookimpl
def crs_bench_register_augmenters(registry) -> None:
    registry.add("none", NoAugmentation, "No augmentation: train on the released dialogues only.")
