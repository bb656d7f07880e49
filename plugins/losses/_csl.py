"""CSL, the cost-sensitive regulariser of Shinde et al. (LOSSES.md §10), code semantics, vectorised for C ≈ 6,000.

State (buffers, updated only in training mode unless ``legacy_eval_updates``): running per-item sums of
logit-vector norms and their counts (S_i = (Σ‖z‖/count_i)², keyed by the gold item) and the previous training
batch's prediction histogram (for the ±reward term). In eval mode S uses the stored state only, so the loss is
a deterministic function of the logits.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._base import ItemLoss

NUM_EPS = 1e-6


class CSL(ItemLoss):
    """L = CE + weight·(1/C)·Σ_i (γ_i·n_i + r_i)² / (‖Z − 1·e_iᵀ‖²_F + ε)."""

    loss_name = "csl"

    def __init__(self, num_items: int, reward: float = 2.0, weight: float = 1.0,
                 target_set: str = "all", legacy_eval_updates: bool = False, reset_on_epoch: bool = False,
                 tiers: list[str] | None = None):
        if target_set not in ("all", "tail"):
            raise ValueError(f"loss 'csl': target_set must be 'all' or 'tail', got {target_set!r}")
        super().__init__(num_items=num_items, reward=reward, weight=weight, target_set=target_set,
                         legacy_eval_updates=legacy_eval_updates, reset_on_epoch=reset_on_epoch,
                         status="rejected OpenReview submission; code semantics")
        self.reward, self.weight = float(reward), float(weight)
        self.legacy_eval_updates, self.reset_on_epoch = bool(legacy_eval_updates), bool(reset_on_epoch)
        if target_set == "tail":
            if tiers is None or len(tiers) != num_items:
                raise ValueError("loss 'csl': target_set='tail' needs the popularity tiers (ctx.stats.tiers)")
            in_target = torch.tensor([tier == "tail" for tier in tiers], dtype=torch.bool)
        else:
            in_target = torch.ones(num_items, dtype=torch.bool)
        self.register_buffer("in_target", in_target)
        self.register_buffer("norm_sum", torch.zeros(num_items, dtype=torch.float64))
        self.register_buffer("norm_count", torch.zeros(num_items, dtype=torch.float64))
        self.register_buffer("previous_predictions", torch.zeros(num_items, dtype=torch.float64))

    @property
    def updates_state(self) -> bool:
        return self.training or self.legacy_eval_updates

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        if self.reset_on_epoch:
            self.previous_predictions.zero_()

    @staticmethod
    def denominators(z: torch.Tensor) -> torch.Tensor:
        """‖Z − 1·e_iᵀ‖²_F for every item i at once: ‖Z‖²_F − 2·Σ_b Z_bi + B."""
        return (z * z).sum() - 2.0 * z.sum(dim=0) + z.shape[0]

    def numerators(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """t_i = (γ_i·n_i + r_i)², detached; updates the state when `updates_state`."""
        batch, num_items = z.shape
        detached = z.detach().to(torch.float64)
        predicted = torch.bincount(detached.argmax(dim=1), minlength=num_items).to(torch.float64)
        norm_sum, norm_count = self.norm_sum, self.norm_count
        if self.updates_state:
            norm_sum = norm_sum.index_add(0, labels, detached.norm(dim=1))
            norm_count = norm_count.index_add(0, labels, torch.ones(batch, dtype=torch.float64, device=z.device))
        seen = norm_count > 0
        strength = torch.where(seen, (norm_sum / norm_count.clamp_min(1.0)) ** 2, torch.zeros_like(norm_sum))
        share = predicted / batch * (-math.log(1.0 / batch + NUM_EPS))
        gamma_n = torch.where(predicted > 0,
                              strength / (NUM_EPS + (strength.max() + NUM_EPS) * share.clamp_min(1e-300)) * predicted,
                              torch.zeros_like(predicted))
        change = torch.sign(predicted - self.previous_predictions)  # grew → −reward, shrank → +reward
        rewards = torch.where(self.in_target, -self.reward * change, torch.zeros_like(change))
        if self.updates_state:
            self.norm_sum.copy_(norm_sum)
            self.norm_count.copy_(norm_count)
            self.previous_predictions.copy_(predicted)
        return ((gamma_n + rewards) ** 2).to(z.dtype)

    def regulariser(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        numerators = self.numerators(z, labels)
        return (numerators / (self.denominators(z) + NUM_EPS)).sum() / z.shape[1]

    def per_instance(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = self._prepare(logits, labels)
        ce = F.cross_entropy(z, labels, reduction="none")
        if self.weight == 0.0:
            return ce
        return ce + self.weight * self.regulariser(z, labels)
