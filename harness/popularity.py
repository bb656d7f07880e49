"""Training-split item statistics: popularity, tiers and label counts (PROTOCOL.md §4.1-4.2).

Popularity counts *original* training dialogues that mention an item (never valid/test, never
synthetic dialogues), so that metrics stay comparable across augmenters. Label counts, the statistic
long-tail losses re-weight with, count the training samples the model actually trains on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .data import Dialogue, RecSample

TIERS = ("head", "body", "tail")


@dataclass(frozen=True)
class TierThresholds:
    head_min: int = 6  # h: head = pop >= h
    tail_max: int = 1  # tau: tail = pop <= tau

    def __post_init__(self) -> None:
        if self.head_min <= self.tail_max + 1:
            raise ValueError(f"tier thresholds need head_min > tail_max + 1, got {self.head_min} and {self.tail_max}")

    def tier_of(self, count: int) -> str:
        if count >= self.head_min:
            return "head"
        if count <= self.tail_max:
            return "tail"
        return "body"


@dataclass
class ItemStatistics:
    popularity: list[int]  # pop(i): training dialogues mentioning item i
    label_counts: list[int]  # training samples whose label is item i
    thresholds: TierThresholds = field(default_factory=TierThresholds)

    @property
    def tiers(self) -> list[str]:
        return [self.thresholds.tier_of(count) for count in self.popularity]

    @property
    def cold(self) -> list[bool]:
        return [count == 0 for count in self.popularity]

    def tier_sizes(self) -> dict[str, int]:
        tiers = self.tiers
        sizes = {tier: tiers.count(tier) for tier in TIERS}
        sizes["cold"] = sum(self.cold)
        return sizes

    def summary(self) -> dict:
        return {
            "unit": "training dialogues",
            "head_min": self.thresholds.head_min,
            "tail_max": self.thresholds.tail_max,
            "tier_sizes": self.tier_sizes(),
        }


def compute_statistics(
    num_items: int,
    train_dialogues: Sequence[Dialogue],
    train_samples: Sequence[RecSample],
    thresholds: TierThresholds | None = None,
) -> ItemStatistics:
    popularity = [0] * num_items
    for dialogue in train_dialogues:
        if dialogue.synthetic:
            continue
        for item in {item for turn in dialogue.turns for item in turn.items}:
            popularity[item] += 1
    label_counts = [0] * num_items
    for sample in train_samples:
        label_counts[sample.label] += 1
    return ItemStatistics(popularity, label_counts, thresholds or TierThresholds())
