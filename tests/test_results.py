from __future__ import annotations

import gzip
import json

import pytest

from harness.results import RecordError, encode_samples, read_record, validate_record, write_atomic, write_run
from tests.test_leaderboard import record


def test_invalid_record_is_never_written(tmp_path):
    bad = record("a", 0, 0.2)
    del bad["dataset"]["fingerprint"]
    with pytest.raises(RecordError, match="dataset.fingerprint"):
        write_run(tmp_path, bad, [])
    assert list(tmp_path.iterdir()) == []
    nan = record("a", 0, float("nan"))
    with pytest.raises(RecordError, match="NaN"):
        validate_record(nan)


def test_atomic_write_leaves_old_content_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "record.json"
    write_atomic(path, b"old")
    import harness.results as results

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no temp file left behind


def test_samples_are_byte_reproducible_and_hashed(tmp_path):
    rows = [{"id": "s1", "top": [1, 2]}]
    encoded = encode_samples(rows)
    assert gzip.decompress(encoded) == b'{"id":"s1","top":[1,2]}\n'  # compact JSON lines, nothing else
    assert encoded[4:8] == b"\x00\x00\x00\x00"  # gzip header mtime 0: the bytes do not depend on the clock
    path = write_run(tmp_path, record("a", 0, 0.2), rows)
    stored = read_record(path)
    assert stored["artifacts"]["samples"]["rows"] == 1
    with gzip.open(tmp_path / "samples.jsonl.gz", "rt") as stream:
        assert [json.loads(line) for line in stream] == rows


def test_reading_a_corrupt_record_names_the_file(tmp_path):
    path = tmp_path / "record.json"
    path.write_text('{"schema_version": 1,\n "run_id": ')
    with pytest.raises(RecordError, match=rf"{path}:2: invalid JSON"):
        read_record(path)
