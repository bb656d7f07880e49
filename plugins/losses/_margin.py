"""Cosine-head margin losses: ALA (LOSSES.md §7, [3rd-party] form) and LDAM with deferred re-weighting (§15).

Both receive logits = scale·cos from a model that provides ``cosine_head``; the loss's ``scale`` must equal
the model's scale (ALA recovers cos = logits / scale for its difficulty factor, LDAM subtracts scale·Δ).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._base import CountLoss, class_balanced_weights


class _DeferredReweighting(CountLoss):
    """Shared DRW: from a given epoch on, ℓ_i is multiplied by the class-balanced weight of y_i (§16)."""

    drw_strict = False  # ALA: epochs strictly after drw_epoch; LDAM: from drw_epoch on

    def _init_drw(self, drw_epoch: int | None, drw_beta: float) -> None:
        self.drw_epoch = None if drw_epoch is None else int(drw_epoch)
        weights = class_balanced_weights(self.smoothed_np, float(drw_beta))
        self.register_buffer("drw_weights", torch.as_tensor(weights, dtype=torch.float64))

    @property
    def drw_active(self) -> bool:
        if self.drw_epoch is None:
            return False
        return self.epoch > self.drw_epoch if self.drw_strict else self.epoch >= self.drw_epoch

    def _reweight(self, loss: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return loss * self._buffer("drw_weights", loss)[labels] if self.drw_active else loss


def _target_shift(z: torch.Tensor, labels: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """z with `amount` subtracted at each row's target column only."""
    return z - F.one_hot(labels, z.shape[1]).to(z.dtype) * amount.unsqueeze(1)


class ALA(_DeferredReweighting):
    """ℓ_i = CE(s·cos − s·A_i·e_{y_i}), A_i = sg((1 − cos_{i,y})/2)·QF_{y_i}, QF_c = log 2/log(Ñ_c/N_min + 1)."""

    loss_name = "ala"
    drw_strict = True

    def __init__(self, ctx: Any, scale: float = 30.0, qf_norm: str = "log2", drw_epoch: int | None = None,
                 drw_beta: float = 0.9999, count_smoothing: str = "max1"):
        if qf_norm not in ("log2", "none"):
            raise ValueError(f"loss 'ala': qf_norm must be 'log2' or 'none', got {qf_norm!r}")
        if scale <= 0:
            raise ValueError(f"loss 'ala': scale must be > 0, got {scale}")
        super().__init__(ctx, count_smoothing=count_smoothing, scale=scale, qf_norm=qf_norm, drw_epoch=drw_epoch,
                         drw_beta=drw_beta, status="3rd-party functional form (OpenLT ALALoss)")
        self.scale = float(scale)
        smoothed = self.smoothed_np
        quantity = 1.0 / np.log(smoothed / smoothed.min() + 1.0)
        if qf_norm == "log2":
            quantity = quantity * math.log(2.0)
        self.register_buffer("quantity_factor", torch.as_tensor(quantity, dtype=torch.float64))
        self._init_drw(drw_epoch, drw_beta)

    def adjustment(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """A_i = DF_i·QF_{y_i} in cosine units, detached."""
        cos_target = (z.detach().gather(1, labels.unsqueeze(1)).squeeze(1) / self.scale).clamp(-1.0, 1.0)
        difficulty = (1.0 - cos_target) / 2.0
        return difficulty * self._buffer("quantity_factor", z)[labels]

    def per_instance(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = self._prepare(logits, labels)
        adjusted = _target_shift(z, labels, self.scale * self.adjustment(z, labels))
        return self._reweight(F.cross_entropy(adjusted, labels, reduction="none"), labels)


class LDAM(_DeferredReweighting):
    """ℓ_i = CE(s·cos − s·Δ_{y_i}·e_{y_i}), Δ_c = max_m·Ñ_c^(−1/4)/max_j Ñ_j^(−1/4); DRW from `drw_epoch` on."""

    loss_name = "ldam"

    def __init__(self, ctx: Any, max_m: float = 0.5, scale: float = 30.0, drw_epoch: int | None = None,
                 drw_beta: float = 0.9999, count_smoothing: str = "max1"):
        if max_m < 0 or scale <= 0:
            raise ValueError(f"loss 'ldam': need max_m >= 0 and scale > 0, got max_m={max_m}, scale={scale}")
        super().__init__(ctx, count_smoothing=count_smoothing, max_m=max_m, scale=scale, drw_epoch=drw_epoch,
                         drw_beta=drw_beta)
        self.scale = float(scale)
        quarter = self.smoothed_np ** -0.25
        self.register_buffer("margins", torch.as_tensor(max_m * quarter / quarter.max(), dtype=torch.float64))
        self._init_drw(drw_epoch, drw_beta)

    def per_instance(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = self._prepare(logits, labels)
        adjusted = _target_shift(z, labels, self.scale * self._buffer("margins", z)[labels])
        return self._reweight(F.cross_entropy(adjusted, labels, reduction="none"), labels)
