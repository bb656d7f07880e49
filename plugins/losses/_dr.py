"""DR-Loss (Lin et al., ECCV 2024; LOSSES.md §11) adapted to one-hot CRS labels, in the stable softplus/LSE form.

Per item column c over the batch: L_c = softplus(logaddexp(LSE_{Pos_c}(−γ₁s) + LSE_{Neg_c}(γ₁s), LSE_{Neg_c}(γ₂s))),
with −inf for empty sets. The pair term is a column-wise (item-side) softmax over the dialogues of the batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._base import ItemLoss

MODES = ("hybrid", "faithful", "present_only")


def masked_logsumexp(values: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """LSE over the entries where `mask` holds; −inf (with zero gradient) for an empty set."""
    return torch.logsumexp(torch.where(mask, values, torch.full_like(values, float("-inf"))), dim=dim)


def instance_lsep(logits: torch.Tensor, labels: torch.Tensor, gamma1: float = 1.0) -> torch.Tensor:
    """Instance-wise LSEP log(1 + Σ_{j≠y} exp(γ₁(z_j − z_y))); equals CE at γ₁ = 1 (LOSSES.md §11 test 1)."""
    z = logits
    target = F.one_hot(labels, z.shape[1]).to(torch.bool)
    z_y = z.gather(1, labels.unsqueeze(1))
    return F.softplus(masked_logsumexp(gamma1 * (z - z_y), ~target, dim=1))


class DRLoss(ItemLoss):
    """DR-Loss over the item columns; ``hybrid`` (default) = CE + lam·mean_c L_c."""

    loss_name = "dr-loss"

    def __init__(self, gamma1: float = 5.0, gamma2: float = 7.0, mode: str = "hybrid", lam: float = 1.0,
                 lambda_neg: float = 1.0, negative_term: bool = True):
        if mode not in MODES:
            raise ValueError(f"loss 'dr-loss': mode must be one of {MODES}, got {mode!r}")
        super().__init__(num_items=None, gamma1=gamma1, gamma2=gamma2, mode=mode, lam=lam, lambda_neg=lambda_neg,
                         negative_term=negative_term)
        self.gamma1, self.gamma2, self.mode = float(gamma1), float(gamma2), mode
        self.lam, self.lambda_neg, self.negative_term = float(lam), float(lambda_neg), bool(negative_term)

    def column_losses(self, z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_c for every item column [C], mask of columns with a positive in the batch [C])."""
        num_items = z.shape[1]
        rows = labels.unsqueeze(1)
        minus_inf = torch.full_like(rows, float("-inf"), dtype=z.dtype)
        # Neg_c excludes each row's gold column: set exactly those B entries to −inf.
        negatives = torch.logsumexp((self.gamma1 * z).scatter(1, rows, minus_inf), dim=0)
        # Pos_c holds only the B gold entries: a scatter-LSE over the labels instead of a [B, C] pass.
        gold = -self.gamma1 * z.gather(1, rows).squeeze(1)
        shift = torch.full((num_items,), float("-inf"), dtype=z.dtype, device=z.device)
        shift = shift.scatter_reduce(0, labels, gold.detach(), reduce="amax", include_self=True)
        present = torch.isfinite(shift)
        shift = torch.where(present, shift, torch.zeros_like(shift))
        total = torch.zeros(num_items, dtype=z.dtype, device=z.device).scatter_add(0, labels, (gold - shift[labels]).exp())
        positives = torch.where(present, torch.where(present, total, torch.ones_like(total)).log() + shift,
                                torch.full_like(total, float("-inf")))
        # A column whose every instance is positive has no negatives: L_c = log(1 + 0) = 0. Feed finite
        # stand-ins there so that no −inf − (−inf) reaches a backward pass.
        has_negative = torch.bincount(labels, minlength=num_items) < z.shape[0]
        zero = torch.zeros_like(negatives)
        pair = torch.where(has_negative, positives + torch.where(has_negative, negatives, zero), zero)
        if self.negative_term:
            suppress = torch.logsumexp((self.gamma2 * z).scatter(1, rows, minus_inf), dim=0)
            pair = torch.logaddexp(pair, torch.where(has_negative, suppress, zero))
        return torch.where(has_negative, F.softplus(pair), zero), present

    def dr_term(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if z.shape[0] < 2:
            raise ValueError("loss 'dr-loss' needs at least 2 instances per batch (it ranks dialogues within each "
                             "item column); use drop_last or a larger batch")
        columns, present = self.column_losses(z, labels)
        if self.mode == "present_only":
            absent = ~present
            present_mean = columns[present].mean()
            absent_mean = columns[absent].mean() if bool(absent.any()) else columns.new_zeros(())
            return present_mean + self.lambda_neg * absent_mean
        return columns.mean()

    def per_instance(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = self._prepare(logits, labels)
        term = self.dr_term(z, labels).expand(z.shape[0])
        if self.mode == "hybrid":
            return F.cross_entropy(z, labels, reduction="none") + self.lam * term
        return term
