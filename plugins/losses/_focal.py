"""Focal loss (LOSSES.md §5) and A-FL-CRS, the reconstructed CRS mapping of EAFL / A-FL (§8)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._base import CountLoss, ItemLoss, class_balanced_weights, focal_term, gather_target, raw_label_counts, \
    smooth_counts, counts_provenance

FOCAL_PRESETS = {"lumicrs": {"alpha": 0.25, "gamma": 2.0}}


class FocalLoss(ItemLoss):
    """ℓ_i = −α_{y_i}·(1 − p_t)^γ·log p_t with p_t from log-softmax (unweighted p_t in the modulator)."""

    loss_name = "focal"

    def __init__(self, ctx: Any, gamma: float = 2.0, alpha: float = 1.0, alpha_mode: str = "none",
                 beta: float = 0.9999, preset: str | None = None, count_smoothing: str = "max1"):
        if preset is not None:
            if preset not in FOCAL_PRESETS:
                raise ValueError(f"loss 'focal': unknown preset {preset!r}; known: {sorted(FOCAL_PRESETS)}")
            gamma, alpha = FOCAL_PRESETS[preset]["gamma"], FOCAL_PRESETS[preset]["alpha"]
        if gamma < 0:
            raise ValueError(f"loss 'focal': gamma must be >= 0, got {gamma}")
        if alpha_mode not in ("none", "class_balanced"):
            raise ValueError(f"loss 'focal': alpha_mode must be 'none' or 'class_balanced', got {alpha_mode!r}")
        super().__init__(num_items=None, gamma=gamma, alpha=alpha, alpha_mode=alpha_mode, beta=beta,
                         preset=preset, count_smoothing=count_smoothing)
        self.gamma, self.alpha = float(gamma), float(alpha)
        self.register_buffer("class_alpha", None)
        if alpha_mode == "class_balanced":  # "CB-focal": per-class α_c = scalar α × CB weights (§16)
            raw = raw_label_counts(ctx, self.loss_name)
            weights = class_balanced_weights(smooth_counts(raw, count_smoothing, self.loss_name), beta)
            self.num_items = int(raw.size)
            self.class_alpha = torch.as_tensor(weights, dtype=torch.float64)
            self.provenance = counts_provenance(raw, count_smoothing)

    def set_class_alpha(self, weights: torch.Tensor) -> None:
        """Use explicit per-class α_c (tests, custom weightings)."""
        self.num_items = int(weights.numel())
        self.class_alpha = weights.detach().to(torch.float64).clone()

    def per_instance(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = self._prepare(logits, labels)
        log_pt = gather_target(F.log_softmax(z, dim=1), labels)
        loss = -focal_term(log_pt, self.gamma) * log_pt
        if self.class_alpha is not None:
            loss = loss * self._buffer("class_alpha", z)[labels]
        return loss * self.alpha if self.alpha != 1.0 else loss


def binary_afl_gamma_and_weights(mask: np.ndarray) -> tuple[float, np.ndarray]:
    """The original A-FL statistics of one binary ground-truth volume (port check, LOSSES.md §8 test 1).

    γ = S + V with S the mean central-difference gradient magnitude of the mask and V its foreground
    fraction; weights [foreground, background] are the normalised inverse class fractions.
    """
    mask = np.asarray(mask, dtype=np.float64)
    gradients = np.gradient(mask)
    smoothness = float(np.sqrt(sum(g * g for g in gradients)).mean())
    fraction = float(mask.mean())
    inverse = np.array([1.0 / fraction, 1.0 / (1.0 - fraction)])
    return smoothness + fraction, inverse / inverse.sum()


class AdaptiveFocalCRS(CountLoss):
    """A-FL-CRS [reconstructed]: per-batch γ_B = λ_S·S_B + λ_V·V_B from the labels, inverse-frequency weights.

    V_B = mean_i π_{y_i}; S_B = entropy of the batch label histogram / log B; w_c = (1/Ñ_c) normalised so the
    mean per-instance weight over the training labels is 1. Modes: ``softmax`` (default), ``ova`` (C-channel
    sigmoid focal BCE summed over items, the positive channel weighted by w_{y_i}) and ``per_instance``
    (S_i = sg(H(p_i))/log C instead of S_B).
    """

    loss_name = "eafl"

    def __init__(self, ctx: Any, lambda_s: float = 1.0, lambda_v: float = 1.0, mode: str = "softmax",
                 gamma: float | None = None, class_weights: bool = True, count_smoothing: str = "max1"):
        if mode not in ("softmax", "ova", "per_instance"):
            raise ValueError(f"loss 'eafl': mode must be 'softmax', 'ova' or 'per_instance', got {mode!r}")
        super().__init__(ctx, count_smoothing=count_smoothing, lambda_s=lambda_s, lambda_v=lambda_v, mode=mode,
                         gamma=gamma, class_weights=class_weights, status="reconstructed CRS mapping")
        raw, smoothed = self.raw_counts_np, self.smoothed_np
        if raw.sum() == 0:
            raise ValueError("loss 'eafl': all training-label counts are zero")
        self.lambda_s, self.lambda_v, self.mode = float(lambda_s), float(lambda_v), mode
        self.fixed_gamma = None if gamma is None else float(gamma)
        weights = (1.0 / smoothed) * raw.sum() / (raw / smoothed).sum()
        if not class_weights:
            weights = np.ones_like(weights)
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float64))
        self.register_buffer("prior", torch.as_tensor(smoothed / smoothed.sum(), dtype=torch.float64))

    def batch_gamma(self, labels: torch.Tensor) -> torch.Tensor:
        """γ_B from the batch labels only (a 0-dim tensor; no gradient)."""
        if self.fixed_gamma is not None:
            return torch.tensor(self.fixed_gamma, dtype=torch.float64, device=labels.device)
        batch = labels.shape[0]
        v = self.prior[labels].mean()
        if batch < 2:
            s = torch.zeros((), dtype=torch.float64, device=labels.device)
        else:
            _, counts = torch.unique(labels, return_counts=True)
            share = counts.to(torch.float64) / batch
            s = -(share * share.log()).sum() / math.log(batch)
        return self.lambda_s * s + self.lambda_v * v

    def per_instance(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = self._prepare(logits, labels)
        weights = self._buffer("weights", z)
        gamma = self.batch_gamma(labels).to(z.dtype)
        if self.mode == "ova":
            target = F.one_hot(labels, z.shape[1]).to(z.dtype)
            signed = torch.where(target > 0, z, -z)  # p_t = σ(signed)
            log_pt = F.logsigmoid(signed)
            channel_weight = torch.where(target > 0, weights[labels].unsqueeze(1), torch.ones_like(z))
            return (-channel_weight * focal_term(log_pt, gamma) * log_pt).sum(dim=1)
        log_p = F.log_softmax(z, dim=1)
        log_pt = gather_target(log_p, labels)
        if self.mode == "per_instance" and self.fixed_gamma is None:
            entropy = -(log_p.exp() * log_p).sum(dim=1).detach() / math.log(z.shape[1])
            gamma = self.lambda_s * entropy + self.lambda_v * self._buffer("prior", z)[labels].mean()
        return -weights[labels] * focal_term(log_pt, gamma) * log_pt
