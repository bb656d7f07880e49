"""Cosine-head margin losses: ALA and LDAM(-DRW) (LOSSES.md §7, §15).

Both require a model that provides ``cosine_head`` and returns logits = scale·cos; the loss's ``scale``
hyperparameter must equal the model's scale. Registration only; the implementations live in `_margin`.
"""
from __future__ import annotations

from harness.api import hookimpl


def build_ala(ctx, scale: float = 30.0, qf_norm: str = "log2", drw_epoch: int | None = None,
              drw_beta: float = 0.9999, count_smoothing: str = "max1"):
    """Adaptive logit adjustment: target cosine reduced by sg(difficulty)·quantity factor."""
    from ._margin import ALA

    return ALA(ctx, scale=scale, qf_norm=qf_norm, drw_epoch=drw_epoch, drw_beta=drw_beta,
               count_smoothing=count_smoothing)


def build_ldam(ctx, max_m: float = 0.5, scale: float = 30.0, drw_epoch: int | None = None, drw_beta: float = 0.9999,
               count_smoothing: str = "max1"):
    """Label-distribution-aware margin; drw_epoch turns on class-balanced re-weighting from that epoch on."""
    from ._margin import LDAM

    return LDAM(ctx, max_m=max_m, scale=scale, drw_epoch=drw_epoch, drw_beta=drw_beta,
                count_smoothing=count_smoothing)


@hookimpl
def crs_bench_register_losses(registry) -> None:
    registry.add("ala", build_ala, "Adaptive logit adjustment (Zhao et al. 2022; 3rd-party form), cosine head.",
                 requires={"item_counts", "cosine_head"}, version="1")
    registry.add("ldam", build_ldam, "LDAM margin loss with optional deferred re-weighting (Cao et al. 2019).",
                 requires={"item_counts", "cosine_head"}, version="1")
