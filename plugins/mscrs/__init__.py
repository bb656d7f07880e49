"""MSCRS (SYSTEMS.md §9): multimodal semantic graphs (collaborative co-mentions, item text, optional item
images) refining the entity table of a backbone (`hybrid` or `prompt-lm`). Registered lazily: no torch on import."""
from __future__ import annotations

from harness.api import hookimpl


@hookimpl
def crs_bench_register_models(registry) -> None:
    registry.add("mscrs", "plugins.mscrs.model:build_mscrs",
                 "MSCRS: co-mention, text-kNN and image-kNN graphs (LightGCN) fused into the entity table of a "
                 "backbone (hybrid, or prompt-lm = UniCRS's KGPrompt), contrastive text-entity fuse loss; presets "
                 "paper/released, graph ablations as flags.", version="1")
