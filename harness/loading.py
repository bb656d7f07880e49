"""Data layer entry point: find the data directory, load a dataset through its plugin and the cache, let
the harness build the samples, and cut smoke-run subsets. The runner, `bench data` and the stored-run
tools all load datasets through here."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from .data import Dataset, Split
from .errors import RunError
from .registry import Component

DATA_DIR_ENV = "CRS_BENCH_DATA"


def data_dir_from(setting: str | None) -> Path | None:
    """``--data-dir`` when given, else ``$CRS_BENCH_DATA``, else None (datasets without files)."""
    value = setting or os.environ.get(DATA_DIR_ENV)
    return Path(value) if value else None


def load(component: Component, params: dict[str, Any], data_dir: Path | None, cache_dir: Path,
         limit: int | None = None) -> Dataset:
    """The processed dataset (cached by fingerprint), with samples built by the harness, limited to the
    first `limit` samples per split when given."""
    from .dataset_cache import load_dataset

    if component.extra.get("input_files") and data_dir is None:
        raise RunError(f"dataset '{component.name}' reads files: pass --data-dir or set {DATA_DIR_ENV}")
    dataset = load_dataset(component, data_dir, params, cache_dir)
    return limit_samples(dataset, limit)


def limit_samples(dataset: Dataset, limit: int | None) -> Dataset:
    """`--limit N`: keep the first N recommendation samples of every split (smoke runs)."""
    if limit is None:
        return dataset
    splits = {name: Split(name, split.dialogues, split.rec_samples[:limit], split.conv_samples[:limit])
              for name, split in dataset.splits.items()}
    # other samples, other task: a limited run must never share a leaderboard table with a full one
    fingerprint = hashlib.sha256(f"{dataset.fingerprint}:limit={limit}".encode()).hexdigest()
    return Dataset(dataset.name, dataset.catalogue, splits, dataset.kg, fingerprint,
                   dataset.dedup_turn_labels, {**dataset.info, "limit": limit, "unlimited_fingerprint": dataset.fingerprint})
