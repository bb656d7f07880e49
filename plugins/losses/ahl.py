"""AHL: adaptive hierarchical loss (ALOHA, arXiv 2505.19965) -- RECONSTRUCTED, label results so (LOSSES.md §12).

Hierarchy 'auto' uses genre → item when the dataset has genres (KG 'genre' relation or catalogue metadata),
else popularity tier → item. Registration only; the implementation lives in `_ahl`.
"""
from __future__ import annotations

from typing import Sequence

from harness.api import hookimpl


def build_ahl(ctx, hierarchy: str = "auto", level_weights: Sequence[float] | None = None, gumbel_beta: float = 1.0,
              gumbel_tau: float = 1.0, rho: float = 0.5, disturb: str = "coarse", node_weighting: str = "frequency",
              count_smoothing: str = "max1"):
    """Leaf CE plus coarse-level CE with Gumbel disturbance and node weights f^(−rho) (placeholders)."""
    from ._ahl import build_ahl as build

    return build(ctx, hierarchy, level_weights=level_weights, gumbel_beta=gumbel_beta, gumbel_tau=gumbel_tau,
                 rho=rho, disturb=disturb, weighting=node_weighting, count_smoothing=count_smoothing)


@hookimpl
def crs_bench_register_losses(registry) -> None:
    registry.add("ahl", build_ahl, "Adaptive hierarchical loss (ALOHA 2025), reconstructed; genre or tier levels.",
                 requires={"item_counts", "rng"}, version="1")
