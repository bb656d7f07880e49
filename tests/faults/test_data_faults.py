"""Faults of the data layer, one test per case: each used to give a traceback, a silent empty result or a
stale dataset, and now gives a DataError naming the file (or a rebuilt cache entry)."""
from __future__ import annotations

import gzip
import importlib
import inspect
import json
import os
import pickle
import sys
from pathlib import Path

import pytest

import harness.dataset_cache as dataset_cache
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
    with pytest.raises(DataError, match=r"test_data\.jsonl: test split has no recommendation samples \(1 dialogue; "):
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


# --- 4. an edit that keeps size and mtime -----------------------------------------------------


def test_edit_keeping_size_and_mtime_is_seen(tmp_path):
    """`cp -p` / `touch -r`: same size, same mtime_ns, other content. The cache is keyed by content."""
    data = write_tiny(tmp_path / "inspired")
    victim = data / "test_data_dbpedia.jsonl"
    before = load(data, tmp_path / "cache", list_length=0)
    stat = victim.stat()
    victim.write_text(victim.read_text().replace("C then", "X then"))
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (victim.stat().st_size, victim.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    after = load(data, tmp_path / "cache", list_length=0)
    assert after.fingerprint != before.fingerprint
    assert after.splits["test"].dialogues[0].turns[-1].text == "X then"


# --- 5. an edited helper module of the loader -------------------------------------------------

FAKE_LOADER = '''
from harness.data import Catalogue, Dataset, Dialogue, Split, Turn
from .helpers import TITLE

CALLS = []


def build(data_dir, **params):
    CALLS.append(1)
    turns = [Turn("seeker", "hi", (0,)), Turn("recommender", "try " + TITLE, (1,))]
    dataset = Dataset("fake", Catalogue((1, 2), ("a", TITLE)),
                      {s: Split(s, [Dialogue("0", list(turns))]) for s in ("train", "valid", "test")})
    dataset.build_samples()
    return dataset
'''


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A loader package on sys.path: the factory's module, a helper beside it and one in a subpackage."""
    root = tmp_path / "code" / "crs_fake_loader_pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "loader.py").write_text(FAKE_LOADER)
    (root / "helpers.py").write_text('TITLE = "b"\n')
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "deep.py").write_text("X = 1\n")
    (tmp_path / "code" / "crs_fake_top_level.py").write_text(FAKE_LOADER.replace("from .helpers", "from crs_fake_loader_pkg.helpers"))
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    yield root
    for name in [m for m in sys.modules if m.startswith(("crs_fake_loader_pkg", "crs_fake_top_level"))]:
        del sys.modules[name]


@pytest.mark.parametrize("helper", ["helpers.py", "sub/deep.py"])
def test_edited_helper_module_invalidates(tmp_path, fake_package, helper):
    module = importlib.import_module("crs_fake_loader_pkg.loader")
    fake = Registry("datasets").add("fake", "crs_fake_loader_pkg.loader:build", "fake loader", version="1")
    load_dataset(fake, None, {}, tmp_path / "cache", list_length=0)
    load_dataset(fake, None, {}, tmp_path / "cache", list_length=0)
    assert len(module.CALLS) == 1
    path = fake_package / helper
    path.write_text(path.read_text() + "# edited\n")
    load_dataset(fake, None, {}, tmp_path / "cache", list_length=0)
    assert len(module.CALLS) == 2  # a miss: built again by the (edited) loader code


def test_code_stamp_sources(fake_package):
    import plugins.datasets.common

    sources = dataset_cache.loader_sources(build_inspired)
    assert Path(plugins.datasets.common.__file__).resolve() in sources
    assert Path(inspect.getfile(redial)).resolve() in sources
    packaged = dataset_cache.loader_sources(importlib.import_module("crs_fake_loader_pkg.loader").build)
    assert [p.relative_to(fake_package).as_posix() for p in packaged] == [
        "__init__.py", "helpers.py", "loader.py", "sub/__init__.py", "sub/deep.py"]
    top = importlib.import_module("crs_fake_top_level")
    assert dataset_cache.loader_sources(top.build) == [Path(top.__file__).resolve()]


def test_code_stamp_covers_the_harness_modules(tmp_path, monkeypatch):
    """data.py (sample rules) and dataset_cache.py (entry format) are in every stamp."""
    copy = tmp_path / "harness"
    copy.mkdir()
    for name in ("data.py", "dataset_cache.py"):
        (copy / name).write_text(Path(dataset_cache.__file__).with_name(name).read_text())
    monkeypatch.setattr(dataset_cache, "__file__", str(copy / "dataset_cache.py"))
    comp = component()
    stamps = {dataset_cache.code_stamp(comp)}
    for name in ("data.py", "dataset_cache.py"):
        (copy / name).write_text((copy / name).read_text() + "# edited\n")
        stamps.add(dataset_cache.code_stamp(comp))
    assert len(stamps) == 3


# --- 6. the cache format runs no code ---------------------------------------------------------


class Planted:
    """What a planted pickle would do when unpickled: create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_planted_entries_are_ignored_and_run_nothing(tmp_path):
    data = write_tiny(tmp_path / "inspired")
    fp = load(data, tmp_path / "probe", list_length=0).fingerprint
    live = pickle.dumps(Planted(tmp_path / "control"))
    pickle.loads(live)
    assert (tmp_path / "control").exists()  # the payload is live: unpickling it would create the marker

    cache = tmp_path / "cache"
    (cache / "datasets").mkdir(parents=True)
    marker = tmp_path / "marker"
    (cache / "datasets" / f"inspired-{fp[:16]}.pkl").write_bytes(pickle.dumps(Planted(marker)))  # the old path
    new_path = dataset_cache.cache_path(cache, "inspired", fp)
    new_path.write_bytes(b"\x80\x04garbage, not gzipped JSON")
    calls = []

    def counting(data_dir, **params):
        calls.append(1)
        return build_inspired(data_dir, **params)

    dataset = load(data, cache, factory=counting, list_length=0)
    assert calls == [1] and dataset.fingerprint == fp  # a miss, rebuilt
    assert not marker.exists()
    assert load(data, cache, factory=counting, list_length=0) == dataset and calls == [1]  # the rebuilt entry


def rewrite_entry(path: Path, edit) -> None:
    payload = json.loads(gzip.decompress(path.read_bytes()))
    edit(payload)
    path.write_bytes(gzip.compress(json.dumps(payload).encode()))


def bad_label(payload):
    payload["dataset"]["splits"][2]["samples"] = {"rec": [["test/0/2/0", 0, 2, 99, [], [], True, 0]], "conv": []}


def wrong_type(payload):
    payload["dataset"]["splits"][0]["dialogues"][0][3][0][2] = ["0"]  # an item index as a string


def missing_key(payload):
    del payload["dataset"]["catalogue"]


def code_in_json(payload):
    payload["dataset"] = {"__reduce__": ["os.system", ["touch marker"]]}


@pytest.mark.parametrize("edit", [bad_label, wrong_type, missing_key, code_in_json])
def test_malformed_entry_is_a_miss(tmp_path, edit):
    data = write_tiny(tmp_path / "inspired")
    calls = []

    def counting(data_dir, **params):
        calls.append(1)
        return build_inspired(data_dir, **params)

    first = load(data, tmp_path / "cache", factory=counting, list_length=0)
    rewrite_entry(dataset_cache.cache_path(tmp_path / "cache", "inspired", first.fingerprint), edit)
    again = load(data, tmp_path / "cache", factory=counting, list_length=0)
    assert calls == [1, 1] and again == first


def test_dataset_that_json_cannot_hold_is_not_cached(tmp_path, capsys):
    def with_tuple_info(data_dir, **params):
        dataset = build_inspired(data_dir)
        dataset.info["pair"] = (1, 2)  # JSON would give back a list
        return dataset

    data = write_tiny(tmp_path / "inspired")
    dataset = load(data, tmp_path / "cache", factory=with_tuple_info, list_length=0)
    assert dataset.info["pair"] == (1, 2)
    assert "dataset cache not written" in capsys.readouterr().err
    assert not list((tmp_path / "cache").rglob("*.json.gz"))


def test_real_datasets_round_trip_exactly(tmp_path, data_dir):
    for name in ("inspired", "redial"):
        fresh = load(data_dir, tmp_path / "cache", name)
        cached = load(data_dir, tmp_path / "cache", name)
        assert cached is not fresh and cached == fresh


def test_top_items_refuses_to_return_shorter_lists():
    torch = pytest.importorskip("torch")
    from harness.ranking import top_items

    with pytest.raises(ValueError, match="30 items cannot fill a top-50 list"):
        top_items(torch.zeros(2, 30))
    assert tuple(top_items(torch.zeros(2, 60)).shape) == (2, 50)
