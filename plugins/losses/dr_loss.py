"""DR-Loss: distributionally robust column-wise LSEP (Lin et al., ECCV 2024), CRS adaptation (LOSSES.md §11).

Needs at least 2 instances per batch. Works best with a bounded head (cosine or LayerNorm-ed scores), or
with a lower gamma2. Registration only; the implementation lives in `_dr`.
"""
from __future__ import annotations

from harness.api import hookimpl


def build_dr_loss(ctx, gamma1: float = 5.0, gamma2: float = 7.0, mode: str = "hybrid", lam: float = 1.0,
                  lambda_neg: float = 1.0, negative_term: bool = True):
    """mode='hybrid' (CE + lam·DR, default), 'faithful' (mean over all item columns) or 'present_only'."""
    from ._dr import DRLoss

    return DRLoss(gamma1=gamma1, gamma2=gamma2, mode=mode, lam=lam, lambda_neg=lambda_neg,
                  negative_term=negative_term)


@hookimpl
def crs_bench_register_losses(registry) -> None:
    registry.add("dr-loss", build_dr_loss, "Distributionally robust loss (Lin et al. 2024), CE + item-column LSEP.",
                 requires={"batch_min_2"}, version="1")
