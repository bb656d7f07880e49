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
    """The processed dataset (cached by fingerprint), with samples built by the harness, re-split when
    ``params`` has ``resplit`` (`harness.resplit`), then limited to the first `limit` samples per split."""
    from .dataset_cache import load_dataset
    from .resplit import index_of, loader_params, resplit

    if component.extra.get("input_files") and data_dir is None:
        raise RunError(f"dataset '{component.name}' reads files: pass --data-dir or set {DATA_DIR_ENV}")
    dataset = load_dataset(component, data_dir, loader_params(params), cache_dir)
    dataset = resplit(dataset, index_of({"dataset": {"params": params}}))
    return limit_samples(dataset, limit)


def limit_samples(dataset: Dataset, limit: int | None) -> Dataset:
    """`--limit N`: keep the first N recommendation samples of every split (smoke runs)."""
    if limit is None:
        return dataset
    splits = {name: Split(name, split.dialogues, split.rec_samples[:limit], split.conv_samples[:limit])
              for name, split in dataset.splits.items()}
    # other samples, other task: a limited run must never share a leaderboard table with a full one
    fingerprint = hashlib.sha256(f"{dataset.fingerprint}:limit={limit}".encode()).hexdigest()
    info = {**dataset.info, "limit": limit, "unlimited_fingerprint": dataset.fingerprint}
    if "splits_of" in info:  # a re-split: its table is that of the limited official split
        info["splits_of"] = hashlib.sha256(f"{info['splits_of']}:limit={limit}".encode()).hexdigest()
    return Dataset(dataset.name, dataset.catalogue, splits, dataset.kg, fingerprint, dataset.dedup_turn_labels, info)
