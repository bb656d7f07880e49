"""Prior-based long-tail baselines: Logit Adjustment (§13), Balanced Softmax (§14), Class-Balanced (§16)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._base import CountLoss, class_balanced_weights, focal_term, gather_target


class LogitAdjustment(CountLoss):
    """Loss form ℓ_i = CE(z_i + τ·log π); post-hoc form trains plain CE and ranks by z − τ·log π."""

    loss_name = "logit-adjust"

    def __init__(self, ctx: Any, tau: float = 1.0, form: str = "loss", count_smoothing: str = "max1"):
        if form not in ("loss", "posthoc"):
            raise ValueError(f"loss '{self.loss_name}': form must be 'loss' or 'posthoc', got {form!r}")
        super().__init__(ctx, count_smoothing=count_smoothing, tau=tau, form=form)
        self.tau, self.form = float(tau), form
        log_prior = np.log(self.smoothed_np) - np.log(self.smoothed_np.sum())
        self.register_buffer("log_prior", torch.as_tensor(log_prior, dtype=torch.float64))

    @property
    def adjusts_scores(self) -> bool:
        """True in the post-hoc form: rankings must use `adjust_scores(scores)`."""
        return self.form == "posthoc"

    def adjust_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """Post-hoc ranking scores z − τ·log π (identity in the loss form)."""
        if not self.adjusts_scores:
            return scores
        return scores - self.tau * self.log_prior.to(scores.device, scores.dtype)

    def per_instance(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = self._prepare(logits, labels)
        if self.form == "loss" and self.tau != 0.0:
            z = z + self.tau * self._buffer("log_prior", z)
        return F.cross_entropy(z, labels, reduction="none")


class BalancedSoftmax(CountLoss):
    """ℓ_i = CE(z_i + log Ñ): the label-frequency prior added inside the softmax (equals LA with τ = 1)."""

    loss_name = "balanced-softmax"

    def __init__(self, ctx: Any, count_smoothing: str = "max1"):
        super().__init__(ctx, count_smoothing=count_smoothing)
        self.register_buffer("log_counts", torch.as_tensor(np.log(self.smoothed_np), dtype=torch.float64))

    def per_instance(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = self._prepare(logits, labels)
        return F.cross_entropy(z + self._buffer("log_counts", z), labels, reduction="none")


class ClassBalanced(CountLoss):
    """ℓ_i = w_{y_i}·CE_i (``softmax``) or w_{y_i}·Focal_i (``focal``), w from effective numbers (sum C)."""

    loss_name = "class-balanced"

    def __init__(self, ctx: Any, beta: float = 0.9999, loss_type: str = "softmax", gamma: float = 1.0,
                 count_smoothing: str = "max1"):
        if loss_type not in ("softmax", "focal"):
            raise ValueError(f"loss 'class-balanced': loss_type must be 'softmax' or 'focal', got {loss_type!r}")
        super().__init__(ctx, count_smoothing=count_smoothing, beta=beta, loss_type=loss_type, gamma=gamma)
        self.loss_type, self.gamma = loss_type, float(gamma)
        weights = class_balanced_weights(self.smoothed_np, float(beta))
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float64))

    def per_instance(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = self._prepare(logits, labels)
        log_pt = gather_target(F.log_softmax(z, dim=1), labels)
        loss = -log_pt if self.loss_type == "softmax" else -focal_term(log_pt, self.gamma) * log_pt
        return self._buffer("weights", z)[labels] * loss
