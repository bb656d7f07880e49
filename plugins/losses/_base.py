"""Shared machinery of the loss plugins (LOSSES.md §1): input checks, smoothed counts, CB weights.

Imported only from loss factories (it imports torch at module level), never at plugin-import time.

Contract of every loss module built here:

* ``forward(logits [B, C], labels [B]) -> scalar`` (the training loss);
* ``per_instance(logits, labels) -> [B]`` whose mean equals ``forward``: instance-decomposable
  losses return ℓ_i, batch-level terms (CSL, DR-Loss) are spread evenly over the batch, so results
  can be broken down by popularity tier;
* ``on_epoch_start(epoch)`` (DRW switches, CSL resets; a no-op by default) and the
  ``torch.nn.Module`` ``training`` flag (stateful losses update state only in training mode);
* ``describe() -> dict`` for the run record: hyperparameters and the counts provenance (§1.2).
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

SMOOTHING_RULES = ("max1", "plus1")


def compute_dtype(logits: torch.Tensor) -> torch.dtype:
    """float64 stays float64 (gradcheck); everything else (fp16, bf16, fp32) is computed in fp32 (§1.4)."""
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def check_inputs(name: str, logits: torch.Tensor, labels: torch.Tensor, num_items: int | None = None) -> None:
    """Shape checks only (no device sync), with a message naming the loss."""
    if logits.dim() != 2:
        raise ValueError(f"loss '{name}': logits must be [batch, num_items], got shape {tuple(logits.shape)}")
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"loss '{name}': labels must be [batch] matching logits {tuple(logits.shape)}, "
                         f"got shape {tuple(labels.shape)}")
    if labels.dtype != torch.long:
        raise ValueError(f"loss '{name}': labels must be int64 (torch.long), got {labels.dtype}")
    if num_items is not None and logits.shape[1] != num_items:
        raise ValueError(f"loss '{name}': logits have {logits.shape[1]} columns but the item statistics cover "
                         f"{num_items} items (slice entity logits to the catalogue items first, LOSSES.md §1.3)")


def raw_label_counts(ctx: Any, name: str) -> np.ndarray:
    """Global training-label counts N_c from ``ctx.stats.label_counts``; missing counts are an error.

    There is deliberately no fallback to counts of the current batch (LOSSES.md §1.2).
    """
    stats = getattr(ctx, "stats", None) if ctx is not None else None
    counts = getattr(stats, "label_counts", None) if stats is not None else None
    if counts is None:
        raise ValueError(f"loss '{name}' needs global training-label counts (ctx.stats.label_counts) and got none")
    array = np.asarray(counts, dtype=np.int64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"loss '{name}': ctx.stats.label_counts must be a non-empty 1-D sequence")
    if (array < 0).any():
        raise ValueError(f"loss '{name}': ctx.stats.label_counts has negative entries")
    return array


def smooth_counts(counts: np.ndarray, rule: str, name: str = "?") -> np.ndarray:
    """Ñ_c: ``max1`` = max(N_c, 1) (default), ``plus1`` = N_c + 1 (LOSSES.md §1.2)."""
    if rule == "max1":
        return np.maximum(counts, 1).astype(np.float64)
    if rule == "plus1":
        return counts.astype(np.float64) + 1.0
    raise ValueError(f"loss '{name}': count_smoothing must be one of {SMOOTHING_RULES}, got {rule!r}")


def counts_provenance(counts: np.ndarray, rule: str) -> dict[str, Any]:
    """SHA-256 of the int64 little-endian counts vector, the smoothing rule and the split (§1.2)."""
    digest = hashlib.sha256(np.ascontiguousarray(counts, dtype="<i8").tobytes()).hexdigest()
    return {"counts_sha256": digest, "count_smoothing": rule, "counts_split": "train",
            "num_items": int(counts.size), "zero_count_items": int((counts == 0).sum())}


def class_balanced_weights(smoothed: np.ndarray, beta: float) -> np.ndarray:
    """Cui et al. weights: w_c ∝ (1 − β)/(1 − β^Ñ_c), normalised to sum to C (LOSSES.md §16)."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"class-balanced beta must be in [0, 1), got {beta}")
    if beta == 0.0:
        return np.ones_like(smoothed)
    # 1 - beta**n computed as -expm1(n*log(beta)) keeps precision for beta close to 1.
    effective = -np.expm1(smoothed * np.log(beta)) / (1.0 - beta)
    inverse = 1.0 / effective
    return inverse * smoothed.size / inverse.sum()


def gather_target(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return values.gather(1, labels.unsqueeze(1)).squeeze(1)


def focal_term(log_pt: torch.Tensor, gamma: torch.Tensor | float) -> torch.Tensor:
    """(1 − p_t)^γ with 1 − p_t clamped at 1e-6, so 0 < γ < 1 has a finite derivative at p_t = 1 (§5)."""
    if isinstance(gamma, (int, float)) and gamma == 0:
        return torch.ones_like(log_pt)
    return (-torch.expm1(log_pt)).clamp_min(1e-6).pow(gamma)


class ItemLoss(torch.nn.Module):
    """Base class: mean reduction of `per_instance`, epoch hook, description for the record."""

    loss_name = "?"

    def __init__(self, num_items: int | None = None, **hyperparameters: Any):
        super().__init__()
        self.num_items = num_items
        self.hyperparameters = dict(hyperparameters)
        self.provenance: dict[str, Any] = {}
        self.epoch = 0

    def per_instance(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.per_instance(logits, labels).mean()

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the trainer before each training epoch (0-based)."""
        self.epoch = int(epoch)

    def describe(self) -> dict[str, Any]:
        return {"loss": self.loss_name, "hyperparameters": dict(self.hyperparameters), **self.provenance}

    def _prepare(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(self.loss_name, logits, labels, self.num_items)
        return logits.to(compute_dtype(logits))

    def _buffer(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """A registered float64 statistics buffer, cast to the compute dtype of `like`."""
        return getattr(self, name).to(like.dtype)


class CountLoss(ItemLoss):
    """An ItemLoss built on the global label counts: holds N_c and Ñ_c as buffers."""

    def __init__(self, ctx: Any, count_smoothing: str = "max1", **hyperparameters: Any):
        raw = raw_label_counts(ctx, self.loss_name)
        smoothed = smooth_counts(raw, count_smoothing, self.loss_name)
        super().__init__(num_items=int(raw.size), count_smoothing=count_smoothing, **hyperparameters)
        self.raw_counts_np, self.smoothed_np = raw, smoothed
        self.register_buffer("raw_counts", torch.as_tensor(raw, dtype=torch.float64))
        self.register_buffer("smoothed_counts", torch.as_tensor(smoothed, dtype=torch.float64))
        self.provenance = counts_provenance(raw, count_smoothing)


class CrossEntropy(ItemLoss):
    """Softmax cross-entropy over the catalogue (LOSSES.md §4): the reference of every identity test."""

    loss_name = "ce"

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__(num_items=None, label_smoothing=label_smoothing)
        self.label_smoothing = float(label_smoothing)

    def per_instance(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = self._prepare(logits, labels)
        return F.cross_entropy(z, labels, reduction="none", label_smoothing=self.label_smoothing)
