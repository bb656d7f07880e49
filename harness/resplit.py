"""Resampled splits: ``dataset.params.resplit: K`` re-deals all dialogues of a dataset into train, valid
and test with the official split sizes, shuffled by a generator seeded with K alone.

Why: INSPIRED's test split has 256 samples, so one split's R@10 carries about ±0.027 of sampling noise and
most published gaps are within it. Split 0 is the official split (the default; the parameter is dropped
from the config then, so official runs keep their ids). Split K is the same for every model, loss and
seed, so systems compare on the same test dialogues within a split; the record's dataset says which split
it was (``dataset.resplit``), its fingerprint differs per split, and ``dataset.info.splits_of`` is the
fingerprint all splits of the same data share, which the leaderboard keys its tables by. The split index
is kept out of the config hash like the seed: the leaderboard aggregates a config's runs over
splits x seeds, and its paired bootstrap resamples within each split (`harness.significance`).
"""
from __future__ import annotations

import hashlib
import random
from typing import Any

from .data import SPLITS, Dataset, Split, build_samples

PARAM = "resplit"


def index_of(config: dict[str, Any]) -> int:
    """The split index a config asks for (0: the official split)."""
    return int(((config.get("dataset") or {}).get("params") or {}).get(PARAM, 0) or 0)


def loader_params(params: dict[str, Any]) -> dict[str, Any]:
    """The dataset params without ``resplit``: the loader (and its cache entry) never sees it."""
    return {key: value for key, value in (params or {}).items() if key != PARAM}


def resplit(dataset: Dataset, index: int) -> Dataset:
    """`dataset` with its dialogues re-dealt for split `index` (0: the dataset itself)."""
    if index == 0:
        return dataset
    pooled = [dialogue for name in SPLITS for dialogue in dataset.splits[name].dialogues]
    random.Random(f"crs-bench resplit {index}").shuffle(pooled)
    splits, start = {}, 0
    for name in SPLITS:
        size = len(dataset.splits[name].dialogues)
        split = Split(name, pooled[start:start + size], source=f"{dataset.name} resplit {index}")
        split.rec_samples, split.conv_samples = build_samples(name, split.dialogues, dataset.dedup_turn_labels)
        splits[name] = split
        start += size
    fingerprint = hashlib.sha256(f"{dataset.fingerprint}:resplit={index}".encode()).hexdigest()
    return Dataset(dataset.name, dataset.catalogue, splits, dataset.kg, fingerprint, dataset.dedup_turn_labels,
                   {**dataset.info, "resplit": index, "splits_of": dataset.fingerprint})


def split_of(record: dict[str, Any]) -> int:
    """The split a stored run used (records before resampled splits: 0)."""
    return int(record.get("dataset", {}).get("resplit", 0) or 0)


def table_fingerprint(dataset: dict[str, Any]) -> str:
    """What a record's leaderboard table is keyed by: the fingerprint every split of its data shares."""
    return (dataset.get("info") or {}).get("splits_of") or dataset["fingerprint"]
