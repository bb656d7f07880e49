"""Check, before training, that a loss's declared requirements can be met by the model and the run.

The runner calls `check_compatible(loss_component, model_component, stats_available)` right after resolving
the components, so an impossible combination fails in one line naming the loss, the missing capability
and the model, before any data is loaded or any time is spent training.
"""
from __future__ import annotations

from typing import Any

# Model capabilities (`provides`) that satisfy a loss requirement; several capabilities may satisfy one.
MODEL_REQUIREMENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "cosine_head": (("cosine_head",), "a cosine head"),
    "bounded_head": (("bounded_head", "cosine_head"), "a bounded head"),
}
# Requirements the trainer itself honours (LOSSES.md §1.5); nothing to check against the model:
# epoch_hook: call loss.on_epoch_start(epoch); batch_min_2: never hand the loss a batch of 1 (drop_last);
# rng: the loss owns a generator seeded from ctx.seed.
TRAINER_REQUIREMENTS = frozenset({"epoch_hook", "batch_min_2", "rng"})
KNOWN_REQUIREMENTS = frozenset(MODEL_REQUIREMENTS) | TRAINER_REQUIREMENTS | {"item_counts"}


class RequirementError(ValueError):
    """A loss/model combination the harness refuses before training."""


def check_compatible(loss_component: Any, model_component: Any, stats_available: bool) -> None:
    """Raise RequirementError (one line) when `loss_component.requires` cannot be met; return None otherwise."""
    loss_name = loss_component.name
    model_name = getattr(model_component, "name", "?")
    provides = frozenset(getattr(model_component, "provides", ()) or ())
    for requirement in sorted(loss_component.requires):
        if requirement not in KNOWN_REQUIREMENTS:
            raise RequirementError(f"loss '{loss_name}' requires '{requirement}', which this harness cannot provide")
        if requirement == "item_counts" and not stats_available:
            raise RequirementError(f"loss '{loss_name}' needs global training-label counts ('item_counts'); "
                             f"none are available for this run")
        if requirement in MODEL_REQUIREMENTS:
            accepted, what = MODEL_REQUIREMENTS[requirement]
            if not provides.intersection(accepted):
                raise RequirementError(f"loss '{loss_name}' needs a model with {what} ('{requirement}'); "
                                 f"model '{model_name}' does not provide it")


def check_loss_effect(loss_component: Any, model_component: Any, *, trained: bool, trainable: bool,
                      adjusts_scores: bool, default_loss: str) -> None:
    """A loss other than the default changes nothing when no training happened and it does not adjust test
    scores: the row would be the default loss's under another name. Raise RequirementError (one line)."""
    if trained or adjusts_scores or loss_component.name == default_loss:
        return
    why = "it is not trainable" if not trainable else "the run trains for 0 epochs"
    raise RequirementError(f"loss '{loss_component.name}' has no effect on model '{model_component.name}': {why} and "
                           f"the loss does not adjust scores, so the result would be the '{default_loss}' row under "
                           f"another name; use --loss {default_loss}")
