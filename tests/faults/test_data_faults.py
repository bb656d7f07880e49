"""Faults of the data layer, one test per case: each used to give a traceback, a silent empty result or a
stale dataset, and now gives a DataError naming the file (or a rebuilt cache entry)."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from harness.data import DataError
from harness.dataset_cache import load_dataset
from harness.registry import Registry
from plugins.datasets.inspired import build_inspired, input_files
from plugins.datasets.redial import build_redial
from tests.test_dataset_inspired import write_tiny
from tests.test_dataset_redial import write_tiny as write_tiny_redial


def inspired_component(factory=build_inspired):
    return Registry("datasets").add("inspired", factory, "test dataset", version="1", input_files=input_files)


def load(data: Path, cache: Path, factory=build_inspired, **options):
    return load_dataset(inspired_component(factory), data, {}, cache, **options)


# --- 1. damaged gzip --------------------------------------------------------------------------


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def not_gzip(path: Path) -> None:
    path.write_bytes(b'{"this is": "plain JSON named .gz"}')


@pytest.mark.parametrize("damage", [truncate, not_gzip])
def test_damaged_gzip_is_a_data_error_naming_the_file(tmp_path, damage):
    data = write_tiny(tmp_path / "inspired", gz=True)
    victim = data / "train_data_dbpedia.jsonl.gz"
    damage(victim)
    with pytest.raises(DataError, match=r"train_data_dbpedia\.jsonl\.gz: truncated or not gzip: ") as caught:
        load(data, tmp_path / "cache")
    assert caught.value.file == str(victim)


def test_damaged_gzip_read_by_a_loader_directly(tmp_path):
    """Without the cache in front (no fingerprint first), the loader's own reads say the same."""
    data = write_tiny_redial(tmp_path / "redial", gz=True)
    truncate(data / "movies_with_mentions.csv.gz")
    with pytest.raises(DataError, match=r"movies_with_mentions\.csv\.gz: truncated or not gzip: "):
        build_redial(data)
