"""ALPA, asymmetric loss with Padé approximation (LOSSES.md §9), one-vs-all sigmoid over the item logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._base import ItemLoss


class ALPA(ItemLoss):
    """Σ_c [y·α(1 − p)^{γ⁺}(−L⁺(p)) + (1 − y)·β·p^{γ⁻}(−L⁻(1 − p^m))(p^m)^{γ⁻}], p = σ(z), p^m = max(p − m, 0).

    L⁺(p) = (a₀ + a₁p)/(1 + b₁p), L⁻(q) = (c₀ + c₁q)/(1 + d₁q). Reduction ``mean`` (default, a recorded
    deviation): mean over the batch of each instance's sum over items; ``sum``: the released sum.
    """

    loss_name = "alpa"

    def __init__(self, alpha: float = 0.875, beta: float = 1.625, gamma_pos: float = 0.0,
                 gamma_neg: float = 4.0, margin: float = 0.05, a0: float = -1.5, a1: float = 1.5, b1: float = 0.0,
                 c0: float = -1.0, c1: float = 1.0, d1: float = 0.0, reduction: str = "mean", mode: str = "ova"):
        if reduction not in ("mean", "sum"):
            raise ValueError(f"loss 'alpa': reduction must be 'mean' or 'sum', got {reduction!r}")
        if mode not in ("ova", "softmax"):
            raise ValueError(f"loss 'alpa': mode must be 'ova' or 'softmax', got {mode!r}")
        super().__init__(num_items=None, alpha=alpha, beta=beta, gamma_pos=gamma_pos, gamma_neg=gamma_neg,
                         margin=margin, a0=a0, a1=a1, b1=b1, c0=c0, c1=c1, d1=d1, reduction=reduction, mode=mode)
        self.alpha, self.beta = float(alpha), float(beta)
        self.gamma_pos, self.gamma_neg, self.margin = float(gamma_pos), float(gamma_neg), float(margin)
        self.a0, self.a1, self.b1, self.c0, self.c1, self.d1 = map(float, (a0, a1, b1, c0, c1, d1))
        self.reduction, self.mode = reduction, mode

    def _power(self, base: torch.Tensor, exponent: float) -> torch.Tensor:
        return torch.ones_like(base) if exponent == 0 else base.pow(exponent)

    def _positive(self, p: torch.Tensor) -> torch.Tensor:
        rational = self.a0 + self.a1 * p
        if self.b1 != 0.0:
            rational = rational / (1.0 + self.b1 * p)
        return -self.alpha * self._power(1.0 - p, self.gamma_pos) * rational

    def _negative(self, p: torch.Tensor) -> torch.Tensor:
        shifted = (p - self.margin).clamp_min(0.0)
        q = 1.0 - shifted
        rational = self.c0 + self.c1 * q
        if self.d1 != 0.0:
            rational = rational / (1.0 + self.d1 * q)
        return -self.beta * self._power(p, self.gamma_neg) * rational * self._power(shifted, self.gamma_neg)

    def _probabilities(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = self._prepare(logits, labels)
        return torch.sigmoid(z) if self.mode == "ova" else torch.softmax(z, dim=1)

    def elementwise(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[B, C] loss terms (positives at the label column, negatives elsewhere)."""
        p = self._probabilities(logits, labels)
        target = F.one_hot(labels, p.shape[1]).to(torch.bool)
        return torch.where(target, self._positive(p), self._negative(p))

    def per_instance(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        p = self._probabilities(logits, labels)
        p_target = p.gather(1, labels.unsqueeze(1)).squeeze(1)
        # negatives over the whole row, then swap the label column's negative term for its positive term
        per = self._negative(p).sum(dim=1) - self._negative(p_target) + self._positive(p_target)
        return per * labels.shape[0] if self.reduction == "sum" else per
