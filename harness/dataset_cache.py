"""On-disk cache of processed datasets, keyed by a fingerprint of the inputs and the options.

fingerprint = SHA-256 over (dataset name, component version, sorted params, and for every input
file its name and the SHA-256 of its decompressed content). A changed file or option therefore
gives a new fingerprint (a new cache entry) and the fingerprint goes into every result record.
Content hashes make a file and its `.gz` copy fingerprint alike. Hashes are memoized by
(path, size, mtime_ns) in `datasets/file_hashes.json`, so a warm load only stats the files.

Entries also carry a *code stamp* (hash of the dataset plugin module and of harness/data.py): a
cache written by other loader code is treated as a miss without changing the fingerprint.
"""
from __future__ import annotations

import gzip
import hashlib
import inspect
import json
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from .data import Dataset, check_dataset, reading
from .registry import Component
from .results import write_atomic

CACHE_FORMAT = 1
HASH_MEMO = "file_hashes.json"


def content_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of the file's content, decompressed when the name ends in .gz.

    A damaged gzip is a DataError naming the file: hashing is the first read of every input, so the bare
    EOFError / BadGzipFile would otherwise surface as a traceback that names nothing."""
    digest = hashlib.sha256()
    opener: Callable[..., Any] = gzip.open if Path(path).suffix == ".gz" else open
    with reading(path), opener(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class HashMemo:
    """Content hashes memoized by (resolved path, size, mtime_ns) in a small JSON file."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self.dirty = False
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self.entries = loaded
        except (OSError, ValueError):
            pass

    def sha256(self, file: Path) -> str:
        resolved = Path(file).resolve()
        stat = resolved.stat()
        key = str(resolved)
        entry = self.entries.get(key)
        if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
            return entry["sha256"]
        digest = content_sha256(resolved)
        self.entries[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
        self.dirty = True
        return digest

    def save(self) -> None:
        if self.dirty:
            write_atomic(self.path, json.dumps(self.entries, indent=1, sort_keys=True).encode("utf-8"))
            self.dirty = False


def fingerprint(component: Component, params: dict[str, Any], files: Iterable[Path], memo: HashMemo | None) -> str:
    """The dataset fingerprint (hex SHA-256); `files` empty for datasets without input files."""
    file_hashes = []
    for file in files:
        digest = memo.sha256(file) if memo else content_sha256(file)
        file_hashes.append([Path(file).name.removesuffix(".gz"), digest])
    key = {
        "dataset": component.name,
        "version": component.version,
        "params": sorted((str(k), v) for k, v in params.items()),
        "files": sorted(file_hashes),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=repr).encode("utf-8")).hexdigest()


def code_stamp(component: Component) -> str:
    """Hash of the loader's module source and of harness/data.py (the sample rules)."""
    digest = hashlib.sha256()
    sources = [Path(__file__).with_name("data.py")]
    try:
        source = inspect.getsourcefile(component.resolve())
        if source:
            sources.append(Path(source))
    except TypeError:
        pass
    for source in sources:
        try:
            digest.update(source.read_bytes())
        except OSError:
            digest.update(str(source).encode())
    return digest.hexdigest()


def cache_path(cache_dir: Path, name: str, fp: str) -> Path:
    return Path(cache_dir) / "datasets" / f"{name}-{fp[:16]}.pkl"


def load_dataset(component: Component, data_dir: Path | None, params: dict[str, Any], cache_dir: Path, *,
                 list_length: int | None = None) -> Dataset:
    """The processed dataset, from the cache when its fingerprint and code stamp match, else built and cached.

    Errors of the loader propagate unchanged and nothing is written for a failed load. Either way the dataset
    passes `check_dataset` (no empty split, a catalogue that fills the ranked lists; `list_length` defaults to
    the harness's list length, 0 skips the catalogue checks) or a DataError is raised.
    """
    if list_length is None:
        from .ranking import LIST_LENGTH  # numpy: not at import time (plugins import this module for --help)

        list_length = LIST_LENGTH
    params = dict(params or {})
    list_files = component.extra.get("input_files")
    if callable(list_files) and data_dir is None:
        raise ValueError(f"dataset '{component.name}' reads files: a data directory is required")
    files = list(list_files(Path(data_dir))) if callable(list_files) else []
    datasets_dir = Path(cache_dir) / "datasets"
    memo = HashMemo(datasets_dir / HASH_MEMO) if files else None
    fp = fingerprint(component, params, files, memo)
    stamp = code_stamp(component)
    path = cache_path(cache_dir, component.name, fp)

    cached = _read_entry(path, stamp)
    if cached is not None:
        _save_memo(memo)
        check_dataset(cached, list_length)
        return cached

    dataset = component.resolve()(Path(data_dir) if data_dir is not None else None, **params)
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset '{component.name}' factory returned {type(dataset).__name__}, not harness.data.Dataset")
    dataset.fingerprint = fp
    check_dataset(dataset, list_length)
    payload = {"format": CACHE_FORMAT, "code_stamp": stamp, "fingerprint": fp, "dataset": dataset}
    try:
        write_atomic(path, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    except OSError as error:  # an unwritable cache must not fail the run
        print(f"warning: dataset cache not written ({path}): {error}", file=sys.stderr)
    _save_memo(memo)
    return dataset


def _read_entry(path: Path, stamp: str) -> Dataset | None:
    """The cached dataset, or None for a missing, stale (other code) or unreadable entry."""
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            payload = pickle.load(handle)
    except Exception:  # noqa: BLE001 - a corrupt or incompatible pickle is just a miss
        return None
    if (not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT
            or payload.get("code_stamp") != stamp or not isinstance(payload.get("dataset"), Dataset)):
        return None
    return payload["dataset"]


def _save_memo(memo: HashMemo | None) -> None:
    if memo is None:
        return
    try:
        memo.save()
    except OSError:
        pass


