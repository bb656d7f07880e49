"""CSL: cost-sensitive regulariser of Shinde et al. (OpenReview submission, rejected), code semantics (LOSSES.md §10).

Stateful: updates its running statistics only in training mode (``loss.train()``), optionally resets at
``on_epoch_start``. Registration only; the implementation lives in `_csl`.
"""
from __future__ import annotations

from harness.api import hookimpl


def build_csl(ctx, reward: float = 2.0, weight: float = 1.0, target_set: str = "all",
              legacy_eval_updates: bool = False, reset_on_epoch: bool = False):
    """CE plus the CSL term; target_set='tail' restricts the reward term to tail items."""
    from ._csl import CSL

    stats = getattr(ctx, "stats", None)
    if stats is None:
        raise ValueError("loss 'csl' needs the item statistics (ctx.stats) to know the catalogue size")
    tiers = list(stats.tiers) if target_set == "tail" else None
    return CSL(num_items=len(stats.popularity), reward=reward, weight=weight, target_set=target_set,
               legacy_eval_updates=legacy_eval_updates, reset_on_epoch=reset_on_epoch, tiers=tiers)


@hookimpl
def crs_bench_register_losses(registry) -> None:
    registry.add("csl", build_csl, "CE plus the CSL cost-sensitive regulariser (Shinde et al.; code semantics).",
                 requires={"epoch_hook"}, version="1")
