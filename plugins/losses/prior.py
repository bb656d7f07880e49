"""Prior-based long-tail baselines: logit adjustment, balanced softmax, class-balanced (LOSSES.md §13, §14, §16).

Registration only; the torch implementations live in `_prior`.
"""
from __future__ import annotations

from harness.api import hookimpl


def build_logit_adjust(ctx, tau: float = 1.0, form: str = "loss", count_smoothing: str = "max1"):
    """Menon et al. logit-adjusted CE; form='posthoc' trains CE and ranks by z − τ·log π."""
    from ._prior import LogitAdjustment

    return LogitAdjustment(ctx, tau=tau, form=form, count_smoothing=count_smoothing)


def build_balanced_softmax(ctx, count_smoothing: str = "max1"):
    """Ren et al. balanced softmax: CE(z + log Ñ)."""
    from ._prior import BalancedSoftmax

    return BalancedSoftmax(ctx, count_smoothing=count_smoothing)


def build_class_balanced(ctx, beta: float = 0.9999, loss_type: str = "softmax", gamma: float = 1.0,
                         count_smoothing: str = "max1"):
    """Cui et al. effective-number weights on CE (or on focal with loss_type='focal')."""
    from ._prior import ClassBalanced

    return ClassBalanced(ctx, beta=beta, loss_type=loss_type, gamma=gamma, count_smoothing=count_smoothing)


@hookimpl
def crs_bench_register_losses(registry) -> None:
    registry.add("logit-adjust", build_logit_adjust, "Logit-adjusted cross-entropy (Menon et al. 2021), tau=1.",
                 requires={"item_counts"}, version="1")
    registry.add("balanced-softmax", build_balanced_softmax, "Balanced softmax (Ren et al. 2020).",
                 requires={"item_counts"}, version="1")
    registry.add("class-balanced", build_class_balanced, "Class-balanced CE (Cui et al. 2019), beta=0.9999.",
                 requires={"item_counts"}, version="1")
