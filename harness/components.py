"""What the harness expects from each kind of component (structural protocols, no base classes needed).

Factories are registered through the registration hooks:

* dataset:   ``factory(data_dir: Path, **params) -> Dataset``
* model:     ``factory(ctx: RunContext, **params) -> Recommender``
* loss:      ``factory(ctx: RunContext, **params) -> Loss``
* augmenter: ``factory(ctx: RunContext, **params) -> Augmenter``
* metric:    ``factory(**params) -> RankingMetric | ConversationMetric``
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

from .data import Dataset, Dialogue, RecSample, Split
from .popularity import ItemStatistics

if TYPE_CHECKING:  # torch stays out of `import harness`
    import torch

    from .ranking import MetricContext, RankedLists
    from .registry import Registries


@dataclass
class RunContext:
    """Everything a component may need to build itself for one run."""

    dataset: Dataset
    stats: ItemStatistics
    device: str = "cpu"
    seed: int = 0
    cache_dir: Path = Path(".cache")
    config: dict[str, Any] = field(default_factory=dict)
    # every registered component, for components that build others by name (an augmenter's LLM backend)
    registries: Registries | None = None


@runtime_checkable
class Recommender(Protocol):
    """A recommendation model: one score per catalogue item for each context.

    `trainable` models are also `torch.nn.Module`s; the runner trains them with `training_loss`
    and saves/restores them with `state_dict`. Non-trainable models (baselines) only score.
    """

    trainable: bool

    def make_batch(self, split: Split, samples: Sequence[RecSample]) -> Any:
        """Featurize samples (padding, tensors on the model's device)."""

    def scores(self, batch: Any) -> "torch.Tensor":
        """[batch, num_items] finite or -inf scores; NaN is an error."""


class Loss(Protocol):
    """A recommendation loss over item logits: ``loss(logits, labels) -> scalar``."""

    def __call__(self, logits: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor": ...


class Augmenter(Protocol):
    """Adds synthetic training dialogues before sample construction; never sees valid or test."""

    def augment(self, train: Sequence[Dialogue], rng: random.Random) -> list[Dialogue]:
        """Return the *new* dialogues (marked ``synthetic=True``); the input must not be modified."""

    def statistics(self) -> dict[str, Any]:
        """Generated / filtered / accepted counts for the record."""


class RankingMetric(Protocol):
    """Computed from the top-50 lists of one setting; returns flat ``{key: value or None}``."""

    task: str  # "rec"

    def compute(self, lists: "RankedLists", ctx: "MetricContext") -> dict[str, Any]: ...


class ConversationMetric(Protocol):
    task: str  # "conv"

    def compute_text(self, predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]: ...
