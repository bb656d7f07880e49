"""Assemble a run's record (schema `harness.results.SCHEMA_VERSION`) from the finished run state."""
from __future__ import annotations

from typing import Any

from .api.interfaces import Describable, TrainableRecommender
from .data import SETTINGS, Dataset
from .registry import Component


def component_summary(component: Component, params: dict[str, Any], built: Any) -> dict[str, Any]:
    """Registry facts plus what the built object reports of itself (`describe()`: resolved settings)."""
    summary: dict[str, Any] = {"name": component.name, "params": params, "version": component.version,
                               "origin": component.origin.as_dict() if component.origin else None,
                               "requires": sorted(component.requires), "provides": sorted(component.provides)}
    if isinstance(built, Describable):
        summary["details"] = built.describe()
    if isinstance(built, TrainableRecommender):
        parameters = list(built.parameters())
        summary["parameters"] = {"total": sum(p.numel() for p in parameters),
                                 "trainable": sum(p.numel() for p in parameters if p.requires_grad)}
    return summary


def dataset_summary(dataset: Dataset, run: Any) -> dict[str, Any]:
    """Split sizes as the run used them (the training split after augmentation), and popularity facts."""
    splits = {}
    for name, split in dataset.splits.items():
        chosen = run.train_split if name == "train" and run.train_split is not None else split
        splits[name] = {
            "dialogues": len(chosen.dialogues),
            "synthetic_dialogues": sum(d.synthetic for d in chosen.dialogues),
            "rec_samples": {s: len(chosen.rec_samples_for(s)) for s in SETTINGS},
            "conv_samples": len(chosen.conv_samples),
        }
    return {"name": dataset.name, "fingerprint": dataset.fingerprint, "resplit": dataset.info.get("resplit", 0),
            "num_items": dataset.num_items,
            "splits": splits, "popularity": run.stats.summary() if run.stats else None,
            "info": dataset.info}
