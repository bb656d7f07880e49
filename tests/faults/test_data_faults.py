"""Faults of the data layer, one test per case: each used to give a traceback, a silent empty result or a
stale dataset, and now gives a DataError naming the file (or a rebuilt cache entry)."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from harness.data import DataError
from harness.dataset_cache import load_dataset
from harness.registry import Registry
from plugins.datasets import inspired, redial
from plugins.datasets.inspired import build_inspired
from plugins.datasets.redial import build_redial
from plugins.synthetic import build_synthetic
from tests.test_dataset_inspired import write_tiny
from tests.test_dataset_redial import MAIN as REDIAL_MAIN
from tests.test_dataset_redial import write_tiny as write_tiny_redial


LOADERS = {"inspired": inspired, "redial": redial}


def component(name: str = "inspired", factory=None):
    """A registry entry of a file-reading loader, as its plugin registers it (optionally another factory)."""
    module = LOADERS[name]
    return Registry("datasets").add(name, factory or getattr(module, f"build_{name}"), "test dataset",
                                    version="1", input_files=module.input_files)


def load(data: Path, cache: Path, name: str = "inspired", factory=None, **options):
    return load_dataset(component(name, factory), data, {}, cache, **options)


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


# --- 2. empty training file -------------------------------------------------------------------


def empty_gzip(path: Path) -> None:
    path.write_bytes(gzip.compress(b""))


def zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("gz,empty", [(False, zero_bytes), (True, zero_bytes), (True, empty_gzip)])
def test_empty_training_file_names_file_and_split(tmp_path, gz, empty):
    data = write_tiny(tmp_path / "inspired", gz=gz)
    victim = data / ("train_data_dbpedia.jsonl" + (".gz" if gz else ""))
    empty(victim)
    with pytest.raises(DataError, match="train split has no dialogues") as caught:
        load(data, tmp_path / "cache", list_length=0)
    assert caught.value.file == str(victim)
    assert not list((tmp_path / "cache" / "datasets").glob("inspired-*"))  # nothing cached


def test_empty_training_file_through_the_cli(tmp_path, run_bench):
    data = write_tiny(tmp_path / "inspired", overrides={"train_data_dbpedia.jsonl": ""})
    code, out, err = run_bench("run", "--dataset", "inspired", "--data-dir", str(data), "--model", "popularity",
                               "--quiet")
    assert code == 2
    assert err.strip() == f"bench: error: {data / 'train_data_dbpedia.jsonl'}: train split has no dialogues"


def test_redial_empty_training_file(tmp_path):
    data = write_tiny_redial(tmp_path / "redial", train=[])
    with pytest.raises(DataError, match=r"train_data\.jsonl: train split has no dialogues"):
        load(data, tmp_path / "cache", "redial", list_length=0)


# --- 3. empty test or valid split -------------------------------------------------------------

NO_MOVIES = '[{"text": "hi", "role": "SEEKER"}, {"text": "hello, what do you like?", "role": "RECOMMENDER"}]\n'


@pytest.mark.parametrize("split", ["test", "valid"])
@pytest.mark.parametrize("text,message", [
    ("", "{split} split has no dialogues"),
    (NO_MOVIES, "{split} split has no recommendation samples"),
])
def test_empty_evaluation_split_names_file_and_split(tmp_path, split, text, message):
    data = write_tiny(tmp_path / "inspired", overrides={f"{split}_data_dbpedia.jsonl": text})
    with pytest.raises(DataError, match=message.format(split=split)) as caught:
        load(data, tmp_path / "cache", list_length=0)
    assert caught.value.file == str(data / f"{split}_data_dbpedia.jsonl")


def test_redial_test_file_without_mentions(tmp_path):
    quiet = {"conversationId": "1", "initiatorWorkerId": 1, "respondentWorkerId": 2,
             "messages": [{"senderWorkerId": 1, "text": "hi"}, {"senderWorkerId": 2, "text": "hello"}]}
    train = [dict(REDIAL_MAIN, conversationId=str(100 + i)) for i in range(12)]  # valid gets samples too
    data = write_tiny_redial(tmp_path / "redial", train=train, test=[quiet])
    with pytest.raises(DataError, match=r"test_data\.jsonl: test split has no recommendation samples \(1 dialogues"):
        load(data, tmp_path / "cache", "redial", list_length=0)


# --- catalogue smaller than a ranked list -----------------------------------------------------


def synthetic_component():
    return Registry("datasets").add("synthetic", build_synthetic, "embedded", version="1")


def test_catalogue_smaller_than_the_list_through_the_cli(run_bench):
    code, out, err = run_bench("run", "--dataset", "synthetic", "--model", "popularity", "--quiet",
                               "--set", "dataset.params.num_items=30")
    assert code == 2
    assert err.strip() == "bench: error: dataset 'synthetic': catalogue has 30 items, fewer than the 50 of a ranked list"


def test_catalogue_too_small_for_novel_lists(tmp_path):
    """51 items fill a standard list, but a context naming 2 movies leaves 49 candidates for its novel list."""
    with pytest.raises(DataError, match=r"dataset 'synthetic': catalogue has 51 items and a (valid|test) context "
                                        r"mentions \d+ of them: fewer than 50 candidates"):
        load_dataset(synthetic_component(), None, {"num_items": 51, "train_dialogues": 40}, tmp_path / "cache")


def test_default_synthetic_passes_every_check(tmp_path):
    dataset = load_dataset(synthetic_component(), None, {}, tmp_path / "cache")
    assert dataset.num_items == 300 and all(split.rec_samples for split in dataset.splits.values())
