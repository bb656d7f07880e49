"""Dataset cache: hits, invalidation by file content and options, nothing cached on failure,
fingerprints of datasets without input files, plain/.gz fingerprint equality, hashing on every load."""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

import harness.dataset_cache as dataset_cache
from harness.data import Catalogue, DataError, Dataset, Dialogue, Split, Turn
from harness.dataset_cache import cache_path
from harness.registry import Registry
from plugins.datasets.inspired import build_inspired, input_files


def _sibling(name: str):
    """Import a sibling test module by path (independent of pytest's import mode)."""
    spec = importlib.util.spec_from_file_location(f"_crs_bench_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_inspired_tests = _sibling("test_dataset_inspired")
DATA, write_tiny = _inspired_tests.DATA, _inspired_tests.write_tiny


def load_dataset(*args, **kwargs):
    """The cache under test, on 3-item tiny catalogues: the catalogue-size check is off (tests/faults has it)."""
    return dataset_cache.load_dataset(*args, list_length=0, **kwargs)


class Counting:
    """Wraps a factory and counts calls, so a cache hit is observable."""

    def __init__(self, factory):
        self.factory, self.calls = factory, 0

    def __call__(self, data_dir, **params):
        self.calls += 1
        return self.factory(data_dir, **params)


def component(factory, name="inspired", version="1", with_files=True):
    registry = Registry("datasets")
    extra = {"input_files": input_files} if with_files else {}
    return registry.add(name, factory, "test dataset", version=version, **extra)


def entries(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "datasets").glob("*.json.gz")) if (cache_dir / "datasets").is_dir() else []


def test_second_load_comes_from_cache(tmp_path):
    data = write_tiny(tmp_path / "data" / "inspired")
    factory = Counting(build_inspired)
    comp = component(factory)
    first = load_dataset(comp, data, {}, tmp_path / "cache")
    second = load_dataset(comp, data, {}, tmp_path / "cache")
    assert factory.calls == 1
    assert first.fingerprint and second.fingerprint == first.fingerprint and len(first.fingerprint) == 64
    assert second.splits["train"].rec_samples == first.splits["train"].rec_samples
    assert entries(tmp_path / "cache") == [cache_path(tmp_path / "cache", "inspired", first.fingerprint)]
    assert cache_path(tmp_path / "cache", "inspired", first.fingerprint).name == f"inspired-{first.fingerprint[:16]}.json.gz"
    assert not list((tmp_path / "cache" / "datasets").glob("*.tmp"))


def test_fingerprint_is_the_documented_hash(tmp_path):
    data = write_tiny(tmp_path / "inspired")
    dataset = load_dataset(component(build_inspired), data, {}, tmp_path / "cache")
    files = sorted([p.name, hashlib.sha256(p.read_bytes()).hexdigest()] for p in input_files(data))
    key = {"dataset": "inspired", "version": "1", "params": [], "files": files}
    assert dataset.fingerprint == hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def test_changed_file_invalidates(tmp_path):
    data = write_tiny(tmp_path / "inspired")
    factory = Counting(build_inspired)
    comp = component(factory)
    before = load_dataset(comp, data, {}, tmp_path / "cache")
    test_file = data / "test_data_dbpedia.jsonl"
    test_file.write_text(test_file.read_text() * 2)  # one more dialogue
    after = load_dataset(comp, data, {}, tmp_path / "cache")
    assert factory.calls == 2 and after.fingerprint != before.fingerprint
    assert len(after.splits["test"].dialogues) == 2 * len(before.splits["test"].dialogues)
    assert len(entries(tmp_path / "cache")) == 2


def test_changed_option_or_version_invalidates(tmp_path):
    def factory(data_dir, **params):
        dataset = build_inspired(data_dir)
        dataset.info["params"] = params
        return dataset

    data = write_tiny(tmp_path / "inspired")
    counting = Counting(factory)
    base = load_dataset(component(counting), data, {"a": 1}, tmp_path / "cache")
    other = load_dataset(component(counting), data, {"a": 2}, tmp_path / "cache")
    newer = load_dataset(component(counting, version="2"), data, {"a": 1}, tmp_path / "cache")
    again = load_dataset(component(counting), data, {"a": 1}, tmp_path / "cache")
    assert counting.calls == 3
    assert len({base.fingerprint, other.fingerprint, newer.fingerprint}) == 3
    assert again.fingerprint == base.fingerprint and again.info["params"] == {"a": 1}


def test_params_order_does_not_matter(tmp_path):
    data = write_tiny(tmp_path / "inspired")
    comp = component(lambda d, **p: build_inspired(d))
    one = load_dataset(comp, data, {"x": 1, "y": 2}, tmp_path / "cache")
    two = load_dataset(comp, data, {"y": 2, "x": 1}, tmp_path / "cache")
    assert one.fingerprint == two.fingerprint


def test_failed_load_caches_nothing(tmp_path):
    data = write_tiny(tmp_path / "inspired", overrides={"test_data_dbpedia.jsonl": '[{"text": "x"'})
    with pytest.raises(DataError):
        load_dataset(component(build_inspired), data, {}, tmp_path / "cache")
    assert entries(tmp_path / "cache") == []
    # and a missing file fails before anything is built
    (data / "item_ids.json").unlink()
    with pytest.raises(DataError, match="item_ids.json"):
        load_dataset(component(build_inspired), data, {}, tmp_path / "cache")
    assert entries(tmp_path / "cache") == []


def test_plain_and_gz_share_a_fingerprint(tmp_path):
    plain = load_dataset(component(build_inspired), write_tiny(tmp_path / "a"), {}, tmp_path / "cache")
    packed = load_dataset(component(build_inspired), write_tiny(tmp_path / "b", gz=True), {}, tmp_path / "cache")
    assert plain.fingerprint == packed.fingerprint


def test_dataset_without_input_files(tmp_path):
    def synthetic(data_dir, **params):
        turns = [Turn("seeker", "hi", (0,)), Turn("recommender", "try", (1,))]
        dataset = Dataset("toy", Catalogue((1, 2), ("a", "b")),
                          {s: Split(s, [Dialogue("0", list(turns))]) for s in ("train", "valid", "test")})
        dataset.build_samples()
        return dataset

    factory = Counting(synthetic)
    comp = component(factory, name="toy", with_files=False)
    one = load_dataset(comp, tmp_path / "nowhere", {"n": 3}, tmp_path / "cache")
    two = load_dataset(comp, tmp_path / "elsewhere", {"n": 3}, tmp_path / "cache")
    assert factory.calls == 1 and one.fingerprint == two.fingerprint
    key = {"dataset": "toy", "version": "1", "params": [["n", 3]], "files": []}
    assert one.fingerprint == hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    assert len(one.splits["test"].rec_samples) == 1


def test_every_load_hashes_every_input_file(tmp_path, monkeypatch):
    """No memo: a hash is never trusted from size and mtime (tests/faults has the edit that keeps both)."""
    data = write_tiny(tmp_path / "inspired")
    comp = component(build_inspired)
    first = load_dataset(comp, data, {}, tmp_path / "cache")
    hashed = []
    real = dataset_cache.content_sha256

    def counting(path, chunk=1 << 20):
        hashed.append(Path(path).name)
        return real(path, chunk)

    monkeypatch.setattr(dataset_cache, "content_sha256", counting)
    assert load_dataset(comp, data, {}, tmp_path / "cache").fingerprint == first.fingerprint
    assert sorted(hashed) == sorted(p.name for p in input_files(data))
    assert not (tmp_path / "cache" / "datasets" / "file_hashes.json").exists()


def test_corrupt_or_stale_entry_is_a_miss(tmp_path):
    data = write_tiny(tmp_path / "inspired")
    factory = Counting(build_inspired)
    comp = component(factory)
    first = load_dataset(comp, data, {}, tmp_path / "cache")
    cache_path(tmp_path / "cache", "inspired", first.fingerprint).write_bytes(b"not gzipped JSON")
    second = load_dataset(comp, data, {}, tmp_path / "cache")
    assert factory.calls == 2 and second.fingerprint == first.fingerprint
    assert load_dataset(comp, data, {}, tmp_path / "cache") is not None and factory.calls == 2


def test_real_inspired_round_trip(tmp_path):
    if not (DATA / "inspired").is_dir():
        pytest.skip(f"INSPIRED data not found under {DATA} (set CRS_BENCH_DATA)")
    factory = Counting(build_inspired)
    comp = component(factory)
    fresh = load_dataset(comp, DATA, {}, tmp_path / "cache")
    cached = load_dataset(comp, DATA, {}, tmp_path / "cache")
    assert factory.calls == 1
    assert [len(cached.splits[s].rec_samples) for s in ("train", "valid", "test")] == [2094, 273, 256]
    assert cached.splits["test"].rec_samples == fresh.splits["test"].rec_samples
    assert cached.kg.heads == fresh.kg.heads
