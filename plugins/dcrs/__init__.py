"""DCRS (SYSTEMS.md §8): retrieved training dialogues as demonstrations for the recommender (`dcrs`) and the
response generator (`dcrs-lm`). Registered lazily: importing this module imports no torch."""
from __future__ import annotations

from harness.api import hookimpl


@hookimpl
def crs_bench_register_models(registry) -> None:
    registry.add("dcrs", "plugins.dcrs.factory:build_dcrs",
                 "DCRS: top-m training demonstrations (simcse/bm25/dense/random) attended by the hybrid context vector, or "
                 "their entities added to UniCRS prompts (backbone prompt-lm); presets paper (simcse) / released (random).", version="1")


@hookimpl
def crs_bench_register_generators(registry) -> None:
    registry.add("dcrs-lm", "plugins.dcrs.speaker:DemonstrationLM",
                 "The lm generator with DCRS demonstrations (retrieved training context turn + response) written "
                 "before the dialogue; presets released (bm25) and paper (simcse).", version="1")
