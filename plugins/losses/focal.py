"""Focal-family losses: focal (Lin et al. 2017), ACFL and the released LumiCRS code's loss, and EAFL / A-FL-CRS
(LOSSES.md §5, §6, §8).

Registration only; the torch implementations live in `_focal` and `_acfl` and are imported by the factories.
"""
from __future__ import annotations

from typing import Any

from harness.api import hookimpl


def build_focal(ctx, gamma: float = 2.0, alpha: float = 1.0, alpha_mode: str = "none", beta: float = 0.9999,
                preset: str | None = None, count_smoothing: str = "max1"):
    """Softmax focal loss; alpha_mode='class_balanced' gives CB-focal, preset='lumicrs' sets α=0.25, γ=2."""
    from ._focal import FocalLoss

    return FocalLoss(ctx, gamma=gamma, alpha=alpha, alpha_mode=alpha_mode, beta=beta, preset=preset,
                     count_smoothing=count_smoothing)


def build_acfl(ctx, alpha: float = 0.6, gamma: float = 2.5, k: float = 0.20, alpha_min: float = 0.1,
               alpha_max: float = 1.0, gamma_min: float = 1.0, gamma_max: float = 5.0, theta_min: float = 10.0,
               theta_max: float = 1000.0, theta_max_quantile: float | None = None, mask_mode: str = "hard",
               reduction: str = "masked_mean", normalize_weights: bool = False, detach_modulators: bool = False,
               class_weights: bool = True, sampling_weights: Any = "loss", count_smoothing: str = "max1",
               eps: float = 1e-10):
    """ACFL with the paper's α, γ, k and the released code's clip ranges and thresholds (hardest-k mask)."""
    from ._acfl import ACFL

    return ACFL(ctx, alpha=alpha, gamma=gamma, k=k, alpha_min=alpha_min, alpha_max=alpha_max, gamma_min=gamma_min,
                gamma_max=gamma_max, theta_min=theta_min, theta_max=theta_max,
                theta_max_quantile=theta_max_quantile, mask_mode=mask_mode, reduction=reduction,
                normalize_weights=normalize_weights, detach_modulators=detach_modulators,
                class_weights=class_weights, sampling_weights=sampling_weights, count_smoothing=count_smoothing,
                eps=eps)


def build_acfl_released(ctx):
    """The released LumiCRS code's `focal_loss_v1`: per-instance top-5% mask, α = 0.25, γ = 2 (§6.4)."""
    from ._acfl import ACFLReleased

    return ACFLReleased()


def build_eafl(ctx, lambda_s: float = 1.0, lambda_v: float = 1.0, mode: str = "softmax", gamma: float | None = None,
               class_weights: bool = True, count_smoothing: str = "max1"):
    """A-FL-CRS [reconstructed]: per-batch γ from the labels, inverse-frequency weights."""
    from ._focal import AdaptiveFocalCRS

    return AdaptiveFocalCRS(ctx, lambda_s=lambda_s, lambda_v=lambda_v, mode=mode, gamma=gamma,
                            class_weights=class_weights, count_smoothing=count_smoothing)


@hookimpl
def crs_bench_register_losses(registry) -> None:
    registry.add("focal", build_focal, "Softmax focal loss (Lin et al. 2017), gamma=2, alpha=1.", version="1")
    registry.add("acfl", build_acfl, "LumiCRS adaptive comprehensive focal loss (paper) with hardest-k mask.",
                 requires={"item_counts"}, version="1")
    registry.add("acfl-released", build_acfl_released,
                 "LumiCRS released code's focal_loss_v1 (not the paper's ACFL): gold kept only inside its own "
                 "top 5%, alpha=0.25, gamma=2.", version="1")
    registry.add("eafl", build_eafl, "A-FL adaptive focal loss, CRS mapping (reconstructed).",
                 requires={"item_counts"}, version="1")
