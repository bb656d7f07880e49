"""ACFL, LumiCRS's Adaptive Comprehensive Focal Loss (LOSSES.md §6), with the fidelity switches of §6.3, and
`acfl-released`, the different loss the released LumiCRS training code actually optimises (§6.4)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._base import CountLoss, ItemLoss, focal_term, gather_target

MASK_MODES = ("hard", "paper_literal", "none")
REDUCTIONS = ("masked_mean", "batch_mean")
SAMPLING_MODES = ("loss", "sampler", "off")
RELEASED_LOG_EPS = math.log(1e-10)  # log(0 + 1e-10) of the released focal_loss_v1


def _sampling_mode(value: Any) -> str:
    if value is True:
        return "loss"
    if value is False or value is None:
        return "off"
    if value not in SAMPLING_MODES:
        raise ValueError(f"loss 'acfl': sampling_weights must be one of {SAMPLING_MODES} (or true/false), got {value!r}")
    return value


class ACFL(CountLoss):
    """ℓ_i = −w_c·s_c·α_i·(1 − p_t)^{γ_i}·log p_t over a Top-K mask of the batch (§6.1).

    ``mask_mode="hard"`` (default) *inverts* the paper's Eq. 5 as printed: Eq. 5 reads M_i = 1{p_i ≥ τ_k},
    which with τ_k the batch k-quantile of p_t keeps the B − ⌈k(B−1)⌉ easiest instances and drops the
    hardest k; "hard" uses M_i = 1{p_t ≤ τ_k}, keeping the ⌊k(B−1)⌋ + 1 hardest (lowest p_t) ones, which is
    what the text ("Top-K hard-example mining") and the authors' ``acfl_loss.py`` do. Eq. 5 as printed is
    ``"paper_literal"``; ``"none"`` keeps every instance. The released training code's class-wise top-K
    loss is not a mask mode of this loss but its own loss, `ACFLReleased` (`acfl-released`).

    ``sampling_weights="loss"`` (default, the authors' code) multiplies ℓ_i by s_c; ``"sampler"`` leaves
    s_c out of the loss and sets ``wants_weighted_sampler`` so the trainer draws training samples with
    probability ∝ ``sample_weights(labels)``; ``"off"`` disables s_c.
    """

    loss_name = "acfl"

    def __init__(self, ctx: Any, alpha: float = 0.6, gamma: float = 2.5, k: float = 0.20,
                 alpha_min: float = 0.1, alpha_max: float = 1.0, gamma_min: float = 1.0, gamma_max: float = 5.0,
                 theta_min: float = 10.0, theta_max: float = 1000.0, theta_max_quantile: float | None = None,
                 mask_mode: str = "hard", reduction: str = "masked_mean", normalize_weights: bool = False,
                 detach_modulators: bool = False, class_weights: bool = True, sampling_weights: Any = "loss",
                 count_smoothing: str = "max1", eps: float = 1e-10):
        sampling = _sampling_mode(sampling_weights)
        if mask_mode == "classwise_topk":
            raise ValueError("loss 'acfl': mask_mode 'classwise_topk' is the released code's different loss; "
                             "use loss 'acfl-released' instead")
        if mask_mode not in MASK_MODES:
            raise ValueError(f"loss 'acfl': mask_mode must be one of {MASK_MODES}, got {mask_mode!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"loss 'acfl': reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if not 0.0 <= k <= 1.0:
            raise ValueError(f"loss 'acfl': k must be in [0, 1], got {k}")
        if alpha_min > alpha_max or gamma_min > gamma_max:
            raise ValueError("loss 'acfl': clip ranges need alpha_min <= alpha_max and gamma_min <= gamma_max")
        super().__init__(ctx, count_smoothing=count_smoothing, alpha=alpha, gamma=gamma, k=k, alpha_min=alpha_min,
                         alpha_max=alpha_max, gamma_min=gamma_min, gamma_max=gamma_max, theta_min=theta_min,
                         theta_max=theta_max, theta_max_quantile=theta_max_quantile, mask_mode=mask_mode,
                         reduction=reduction, normalize_weights=normalize_weights,
                         detach_modulators=detach_modulators, class_weights=class_weights,
                         sampling_weights=sampling, eps=eps)
        raw, smoothed = self.raw_counts_np, self.smoothed_np
        if theta_max_quantile is not None:
            seen = smoothed[raw > 0]
            if seen.size == 0:
                raise ValueError("loss 'acfl': theta_max_quantile needs at least one item with a training label")
            theta_max = float(np.quantile(seen, theta_max_quantile))
        self.theta_max = float(theta_max)
        self.hyperparameters["theta_max_resolved"] = self.theta_max
        self.alpha, self.gamma, self.k = float(alpha), float(gamma), float(k)
        self.alpha_min, self.alpha_max = float(alpha_min), float(alpha_max)
        self.gamma_min, self.gamma_max = float(gamma_min), float(gamma_max)
        self.mask_mode, self.reduction, self.eps = mask_mode, reduction, float(eps)
        self.detach_modulators, self.sampling_mode = bool(detach_modulators), sampling

        class_w = 1.0 / (smoothed + eps)
        if normalize_weights and raw.sum() > 0:  # mean of w_{y_j} over training instances becomes 1
            class_w = class_w * raw.sum() / (raw * class_w).sum()
        if not class_weights:
            class_w = np.ones_like(class_w)
        n_max = smoothed.max()
        sample_w = np.ones_like(smoothed)
        sample_w = np.where(smoothed < theta_min, 1.0 + 1.0 / smoothed, sample_w)
        sample_w = np.where(smoothed > self.theta_max, 1.0 - smoothed / n_max, sample_w)
        self.register_buffer("class_w", torch.as_tensor(class_w, dtype=torch.float64))
        self.register_buffer("sample_w", torch.as_tensor(sample_w, dtype=torch.float64))

    @property
    def wants_weighted_sampler(self) -> bool:
        """True when the trainer should draw training samples ∝ `sample_weights` (mode "sampler")."""
        return self.sampling_mode == "sampler"

    def sample_weights(self, labels: torch.Tensor) -> torch.Tensor:
        """s_{y} for each training label: the weights of a `torch.utils.data.WeightedRandomSampler`."""
        return self.sample_w.to(torch.float32)[labels.to(self.sample_w.device)]

    def batch_mask(self, pt: torch.Tensor) -> torch.Tensor:
        """M_i from the detached gold probabilities: τ_k is the linear-interpolation k-quantile (§6.1).

        "hard" keeps p_t ≤ τ_k (Eq. 5 inverted, the hardest k); "paper_literal" keeps p_t ≥ τ_k (Eq. 5).
        """
        if self.mask_mode == "none":
            return torch.ones_like(pt)
        tau = torch.quantile(pt.detach(), self.k)
        keep = pt.detach() <= tau if self.mask_mode == "hard" else pt.detach() >= tau
        return keep.to(pt.dtype)

    def per_instance(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = self._prepare(logits, labels)
        log_p = F.log_softmax(z, dim=1)
        log_pt = gather_target(log_p, labels)
        pt = log_pt.exp()
        modulator_pt = pt.detach() if self.detach_modulators else pt
        alpha_i = (self.alpha * modulator_pt + self.eps).clamp(self.alpha_min, self.alpha_max)
        gamma_i = (self.gamma * (1.0 - modulator_pt)).clamp(self.gamma_min, self.gamma_max)
        weight = self._buffer("class_w", z)[labels]
        if self.sampling_mode == "loss":
            weight = weight * self._buffer("sample_w", z)[labels]
        loss = -weight * alpha_i * focal_term(log_pt, gamma_i) * log_pt
        mask = self.batch_mask(pt)
        masked = mask * loss
        if self.reduction == "batch_mean":
            return masked
        return masked * (labels.shape[0] / mask.sum().clamp_min(1.0))


class ACFLReleased(ItemLoss):
    """`focal_loss_v1` of the released LumiCRS training code (LOSSES.md §6.4), a different loss from ACFL.

    Per instance, τ_i is the 95th percentile of that instance's own probabilities over all items (a
    class-wise top-K, not ACFL's batch-wise one); p̃ = p_t if p_t ≥ τ_i else 0, and
    ℓ_i = −0.25·(1 − p̃)²·log(p̃ + 1e-10). Unlike the paper's ACFL it has fixed α = 0.25 and γ = 2 (no
    adaptive α_i, γ_i), no class weights w_c and no sampling weights s_c, so it needs no label counts; and
    an instance whose gold item lies outside its own top 5% contributes the constant 0.25·23.026 = 5.756
    with zero gradient, so only instances whose target is already ranked high are trained.
    """

    loss_name = "acfl-released"
    ALPHA, GAMMA, TOP_QUANTILE = 0.25, 2.0, 0.95

    def __init__(self) -> None:
        super().__init__(num_items=None, alpha=self.ALPHA, gamma=self.GAMMA, top_quantile=self.TOP_QUANTILE,
                         log_eps=1e-10)

    def per_instance(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(self._prepare(logits, labels), dim=1)
        log_pt = gather_target(log_p, labels)
        tau = torch.quantile(log_p.detach().exp(), self.TOP_QUANTILE, dim=1)
        keep = log_pt.detach().exp() >= tau
        log_kept = torch.where(keep, log_pt, torch.full_like(log_pt, RELEASED_LOG_EPS))
        kept_pt = torch.where(keep, log_pt.exp(), torch.zeros_like(log_pt))
        return -self.ALPHA * (1.0 - kept_pt).pow(self.GAMMA) * log_kept
