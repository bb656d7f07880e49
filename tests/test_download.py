"""`bench data download`: checksum verification against a local HTTP server on 127.0.0.1 that serves
copies of the shared data (no outside network), mismatch handling, and the release-zip path."""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import http.server
import io
import os
import re
import shutil
import threading
import urllib.error
import zipfile
from pathlib import Path

import pytest

from harness.download import DownloadError, _from_archive, download, load_checksums

DATA = Path(os.environ.get("CRS_BENCH_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture
def serve(tmp_path):
    """serve(directory) -> base URL of a throwaway HTTP server for that directory."""
    servers = []

    def start(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def plain_copies(name: str, target: Path) -> Path:
    """Uncompressed copies of shared/data/<name> (the form the official release has)."""
    source = DATA / name
    if not source.is_dir():
        pytest.skip(f"{name} data not found under {DATA} (set CRS_BENCH_DATA)")
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and path.name != "README.md":
            if path.suffix == ".gz":
                with gzip.open(path, "rb") as src, open(target / path.name.removesuffix(".gz"), "wb") as out:
                    shutil.copyfileobj(src, out)
            else:
                shutil.copyfile(path, target / path.name)
    return target


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_checksums_file_is_complete():
    specs = load_checksums()
    assert set(specs) == {"inspired", "redial"}
    assert set(specs["inspired"]["files"]) == {
        "train_data_dbpedia.jsonl", "valid_data_dbpedia.jsonl", "test_data_dbpedia.jsonl",
        "entity2id.json", "dbpedia_subkg.json", "relation2id.json", "item_ids.json"}
    assert all(len(e["sha256"]) == 64 for e in specs["inspired"]["files"].values())
    assert specs["redial"]["archive"]["url"].endswith("/redial_dataset.zip")


def test_inspired_from_local_mirror_verifies_and_loads(tmp_path, serve):
    mirror = plain_copies("inspired", tmp_path / "mirror")
    paths = download("inspired", tmp_path / "data", base_url=serve(mirror))
    assert sorted(p.name for p in paths) == sorted(load_checksums()["inspired"]["files"])
    assert all(sha(p) == sha(mirror / p.name) for p in paths)
    assert not list((tmp_path / "data" / "inspired").glob("*.part"))
    from plugins.datasets.inspired import build_inspired

    dataset = build_inspired(tmp_path / "data")
    assert [len(dataset.splits[s].rec_samples) for s in ("train", "valid", "test")] == [2094, 273, 256]


def test_redial_from_local_mirror(tmp_path, serve):
    mirror = plain_copies("redial", tmp_path / "mirror")
    paths = download("redial", tmp_path / "data", base_url=serve(mirror))
    assert sorted(p.name for p in paths) == ["movie_metadata.json", "movies_with_mentions.csv",
                                             "test_data.jsonl", "train_data.jsonl"]
    assert all(sha(p) == sha(mirror / p.name) for p in paths)


def test_optional_file_may_be_absent_from_mirror(tmp_path, serve):
    mirror = plain_copies("redial", tmp_path / "mirror")
    (mirror / "movie_metadata.json").unlink()
    paths = download("redial", tmp_path / "data", base_url=serve(mirror))
    assert sorted(p.name for p in paths) == ["movies_with_mentions.csv", "test_data.jsonl", "train_data.jsonl"]


def test_mismatch_deletes_the_file_and_says_so(tmp_path, serve):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in load_checksums()["inspired"]["files"]:
        (mirror / name).write_text("tampered\n")
    with pytest.raises(DownloadError) as error:
        download("inspired", tmp_path / "data", base_url=serve(mirror))
    message = str(error.value)
    assert "mismatch" in message and "deleted" in message
    assert hashlib.sha256(b"tampered\n").hexdigest() in message
    assert list((tmp_path / "data" / "inspired").iterdir()) == []  # neither the file nor a .part remains


def test_missing_required_file_on_mirror(tmp_path, serve):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DownloadError, match="train_data_dbpedia.jsonl: not found"):
        download("inspired", tmp_path / "data", base_url=serve(tmp_path / "empty"))


def test_unknown_dataset(tmp_path):
    with pytest.raises(DownloadError, match="unknown dataset 'movielens'"):
        download("movielens", tmp_path)


def test_unreachable_server(tmp_path):
    with pytest.raises(DownloadError, match="failed.*partial file was deleted"):
        download("inspired", tmp_path, base_url="http://127.0.0.1:9")  # discard port: connection refused


def _release_zip(source: Path, target: Path, tamper: str | None = None) -> Path:
    """A zip laid out like redial_dataset.zip, from plain copies (optionally one member tampered)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("train_data.jsonl", "test_data.jsonl", "movies_with_mentions.csv"):
            data = b"tampered\n" if name == tamper else (source / name).read_bytes()
            archive.writestr(name, data)
    return target


def test_release_zip_path(tmp_path, serve):
    source = plain_copies("redial", tmp_path / "plain")
    served = tmp_path / "served"
    served.mkdir()
    zip_path = _release_zip(source, served / "redial_dataset.zip")
    spec = load_checksums()["redial"]
    archive = {"url": serve(served) + "/redial_dataset.zip", "name": "redial_dataset.zip", "sha256": sha(zip_path)}
    target = tmp_path / "data" / "redial"
    target.mkdir(parents=True)
    paths = _from_archive(archive, spec["files"], target)
    assert sorted(p.name for p in paths) == ["movies_with_mentions.csv", "test_data.jsonl", "train_data.jsonl"]
    assert all(sha(p) == sha(source / p.name) for p in paths)
    assert not (target / "redial_dataset.zip").exists()  # the archive is removed after extraction


def test_release_zip_with_wrong_hash_is_deleted(tmp_path, serve):
    source = plain_copies("redial", tmp_path / "plain")
    served = tmp_path / "served"
    served.mkdir()
    _release_zip(source, served / "redial_dataset.zip")
    archive = {"url": serve(served) + "/redial_dataset.zip", "name": "redial_dataset.zip", "sha256": "0" * 64}
    target = tmp_path / "data"
    target.mkdir()
    with pytest.raises(DownloadError, match="redial_dataset.zip: SHA-256 mismatch.*deleted"):
        _from_archive(archive, load_checksums()["redial"]["files"], target)
    assert list(target.iterdir()) == []


def test_release_zip_member_with_wrong_hash(tmp_path, serve):
    source = plain_copies("redial", tmp_path / "plain")
    served = tmp_path / "served"
    served.mkdir()
    zip_path = _release_zip(source, served / "redial_dataset.zip", tamper="test_data.jsonl")
    archive = {"url": serve(served) + "/redial_dataset.zip", "name": "redial_dataset.zip", "sha256": sha(zip_path)}
    target = tmp_path / "data"
    target.mkdir()
    with pytest.raises(DownloadError, match="test_data.jsonl: SHA-256 mismatch.*deleted"):
        _from_archive(archive, load_checksums()["redial"]["files"], target)
    assert not (target / "test_data.jsonl").exists() and not (target / "test_data.jsonl.part").exists()


# --- every failure is a DownloadError naming the file (a fake source: no server, no network) --------------

FAKE_BYTES = b"fake release file\n"


class _Truncated(io.BytesIO):
    """A response whose connection drops after the headers."""

    def read(self, *args) -> bytes:
        raise http.client.IncompleteRead(b"", 10)


def _fake_source(monkeypatch, base_url: str = "https://releases.invalid/", response=None) -> None:
    """Dataset 'fake' with one file, a.txt, served by a stand-in for urlopen (or raising what it is given)."""
    spec = {"fake": {"files": {"a.txt": {"sha256": hashlib.sha256(FAKE_BYTES).hexdigest()}}, "base_url": base_url}}
    monkeypatch.setattr("harness.download.load_checksums", lambda path=None: spec)

    def urlopen(request, timeout=None):
        if isinstance(response, Exception):
            raise response
        return response if response is not None else io.BytesIO(FAKE_BYTES)

    monkeypatch.setattr("harness.download.urllib.request.urlopen", urlopen)


def test_fake_source_downloads_when_nothing_fails(tmp_path, monkeypatch):
    _fake_source(monkeypatch)
    [path] = download("fake", tmp_path)
    assert path == tmp_path / "fake" / "a.txt" and path.read_bytes() == FAKE_BYTES


@pytest.mark.parametrize("failure,expected", [
    ("network", r"a\.txt: download from https://releases\.invalid/a\.txt failed \(.*refused.*\)"),
    ("http", r"a\.txt: HTTP 503 from https://releases\.invalid/a\.txt"),
    ("truncated", r"a\.txt: download from https://releases\.invalid/a\.txt failed \(IncompleteRead"),
    ("checksum", r"a\.txt: SHA-256 mismatch for https://releases\.invalid/a\.txt"),
    ("bad_url", r"a\.txt: download from no-scheme/a\.txt failed \(unknown url type"),
    ("rename", r"a\.txt: cannot write .*a\.txt \(.*\); the downloaded file was deleted"),
])
def test_every_failure_is_one_download_error_naming_the_file(tmp_path, monkeypatch, failure, expected):
    response = {"network": urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
                "http": urllib.error.HTTPError("https://releases.invalid/a.txt", 503, "Unavailable", {}, None),
                "truncated": _Truncated(), "checksum": io.BytesIO(b"tampered\n")}.get(failure)
    if failure == "bad_url":
        monkeypatch.setattr("harness.download.load_checksums", lambda path=None: {
            "fake": {"files": {"a.txt": {"sha256": "0" * 64}}, "base_url": "no-scheme/"}})
    else:
        _fake_source(monkeypatch, response=response)
    if failure == "rename":  # a directory where the verified file should land: the final rename fails
        (tmp_path / "fake" / "a.txt" / "occupied").mkdir(parents=True)
    with pytest.raises(DownloadError, match=expected) as error:
        download("fake", tmp_path)
    assert isinstance(error.value, RuntimeError) and "\n" not in str(error.value)
    assert not list((tmp_path / "fake").glob("*.part"))


def test_unwritable_destination_is_a_download_error_naming_it(tmp_path, monkeypatch):
    _fake_source(monkeypatch)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the destination folder should be")
    with pytest.raises(DownloadError, match=f"fake: cannot write {re.escape(str(blocker / 'fake'))}"):
        download("fake", blocker)
