"""Check a built component against its interface once, when the run builds it, with a one-line error
naming the component, its plugin and the members it lacks. The trainer and runner then use the result
(`LossPlan`, the checked objects) and never probe plugin objects again."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from . import interfaces

_PROTOCOL_INTERNALS = frozenset(dir(Protocol)) | {"__annotations__", "__dict__", "__weakref__",
                                                  "__parameters__", "__orig_bases__", "__protocol_attrs__"}


class ConformanceError(TypeError):
    """A component does not implement the interface of its kind; one line for the user."""


def members(protocol: type) -> list[str]:
    """The attribute and method names a protocol requires (its own and its protocol bases')."""
    names: set[str] = set()
    for klass in protocol.__mro__:
        if klass in (object, Protocol) or not getattr(klass, "_is_protocol", False):
            continue
        names.update(name for name in vars(klass) if not name.startswith("_") and name not in _PROTOCOL_INTERNALS)
        names.update(getattr(klass, "__annotations__", {}))
    return sorted(names)


def missing(obj: Any, protocol: type) -> list[str]:
    return [name for name in members(protocol) if not hasattr(obj, name)]


def check(obj: Any, protocol: type, what: str) -> Any:
    """`obj` if it implements `protocol`; ConformanceError naming `what` (e.g. "model 'kbrd' (builtin:...)")."""
    lacking = missing(obj, protocol)
    if lacking:
        raise ConformanceError(f"{what} does not implement {protocol.__name__}: it lacks "
                               + ", ".join(f"'{name}'" for name in lacking))
    return obj


def check_recommender(model: Any, what: str) -> Any:
    check(model, interfaces.Recommender, what)
    if model.trainable:
        check(model, interfaces.TrainableRecommender, what)
    return model


@dataclass(frozen=True)
class LossPlan:
    """What the trainer and the scorer do with a loss, decided once at build time."""

    loss: Any
    module: interfaces.ModuleLoss | None = None  # moved to the device, train/eval, checkpointed
    epoch_hook: interfaces.EpochHookLoss | None = None
    sampler: interfaces.WeightedSamplingLoss | None = None  # draw samples by its weights
    score_adjuster: interfaces.ScoreAdjustingLoss | None = None  # rank with adjusted scores
    min_batch: int = 1  # batch_min_2: never a batch of one


def plan_loss(loss: Any, requires: frozenset[str], what: str) -> LossPlan:
    """The `LossPlan` of a built loss; declared requirements its object does not honour are errors."""
    if not callable(loss):
        raise ConformanceError(f"{what} does not implement Loss: it is not callable as loss(logits, labels)")
    if "epoch_hook" in requires and not isinstance(loss, interfaces.EpochHookLoss):
        raise ConformanceError(f"{what} declares requires='epoch_hook' but has no on_epoch_start(epoch)")
    sampler = loss if isinstance(loss, interfaces.WeightedSamplingLoss) and loss.wants_weighted_sampler else None
    adjuster = loss if isinstance(loss, interfaces.ScoreAdjustingLoss) and loss.adjusts_scores else None
    return LossPlan(
        loss=loss,
        module=loss if isinstance(loss, interfaces.ModuleLoss) else None,
        epoch_hook=loss if isinstance(loss, interfaces.EpochHookLoss) else None,
        sampler=sampler,
        score_adjuster=adjuster,
        min_batch=2 if "batch_min_2" in requires else 1,
    )
