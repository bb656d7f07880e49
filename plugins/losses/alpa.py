"""ALPA: asymmetric one-vs-all loss with Padé approximation, released constants (LOSSES.md §9)."""
from __future__ import annotations

from harness.api import hookimpl


def build_alpa(ctx, alpha: float = 0.875, beta: float = 1.625, gamma_pos: float = 0.0, gamma_neg: float = 4.0,
               margin: float = 0.05, a0: float = -1.5, a1: float = 1.5, b1: float = 0.0, c0: float = -1.0,
               c1: float = 1.0, d1: float = 0.0, reduction: str = "mean", mode: str = "ova"):
    """ALPA over sigmoid item logits; reduction='sum' is the released (batch-size dependent) scale."""
    from ._alpa import ALPA

    return ALPA(alpha=alpha, beta=beta, gamma_pos=gamma_pos, gamma_neg=gamma_neg, margin=margin, a0=a0, a1=a1,
                b1=b1, c0=c0, c1=c1, d1=d1, reduction=reduction, mode=mode)


@hookimpl
def crs_bench_register_losses(registry) -> None:
    registry.add("alpa", build_alpa, "Asymmetric loss with Pade approximation (Kashyap et al. 2024), one-vs-all.",
                 version="1")
