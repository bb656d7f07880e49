"""`bench data download {inspired,redial} --to DIR`: fetch the official public releases, verify SHA-256.

Checksums live in `plugins/datasets/checksums.json` (see its `_about` for where each came from).
Files land in `DIR/<name>/` under their release names, which is the layout the loaders read.
Every download goes to `<file>.part`; only a verified file is renamed into place, and a file whose
hash does not match is deleted with an error that says so. Every failure (network, HTTP status, checksum,
unwritable destination) is a `DownloadError` with a one-line message naming the file or URL, so the CLI
can print it as a user error instead of a traceback.

Sources:
* official (default): INSPIRED file by file from the UniCRS repository; ReDial as the release zip
  `redial_dataset.zip`, whose hash is checked before extraction and whose members are then checked
  one by one where a per-file hash is recorded.
* a mirror (`base_url`): every file fetched as `<base_url>/<file name>` (flat layout), e.g. a local
  HTTP server in tests, or a lab mirror. Optional files (ReDial's movie_metadata.json) come only from
  a mirror.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Any

CHECKSUMS_PACKAGE = "plugins.datasets"  # checksums.json ships next to the dataset plugins
CHUNK = 1 << 20
TIMEOUT = 60


class DownloadError(RuntimeError):
    """A download failed or did not verify; the message names the file and what was done about it."""


def load_checksums(path: Path | None = None) -> dict[str, Any]:
    """Dataset name -> {files: {name: {sha256, ...}}, archive?, base_url?} (keys starting with _ dropped)."""
    if path is None:
        import importlib.resources

        text = (importlib.resources.files(CHECKSUMS_PACKAGE) / "checksums.json").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def accepted_hashes(entry: dict[str, Any]) -> set[str]:
    hashes = set(entry.get("also_accepted") or [])
    if entry.get("sha256"):
        hashes.add(entry["sha256"])
    return hashes


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def download(name: str, dest: Path, base_url: str | None = None) -> list[Path]:
    """Fetch dataset `name` into `dest/name/`; returns the verified files. Raises DownloadError."""
    specs = load_checksums()
    if name not in specs:
        raise DownloadError(f"unknown dataset '{name}' for download; known: {', '.join(sorted(specs))}")
    target = Path(dest) / name
    try:
        target.mkdir(parents=True, exist_ok=True)
        return _download_into(specs[name], target, base_url)
    except OSError as error:  # a local file operation (mkdir, write, rename, extract) outside the fetch guard
        raise DownloadError(f"{name}: cannot write {error.filename or target} ({_reason(error)})") from None


def _download_into(spec: dict[str, Any], target: Path, base_url: str | None) -> list[Path]:
    files: dict[str, dict[str, Any]] = spec["files"]
    if base_url is not None:
        return _from_mirror(files, target, base_url.rstrip("/") + "/")
    if "archive" in spec:
        return _from_archive(spec["archive"], files, target)
    return [_fetch_verified(spec["base_url"] + file, target / file, accepted_hashes(entry))
            for file, entry in files.items() if not entry.get("optional")]


def _from_mirror(files: dict[str, dict[str, Any]], target: Path, base_url: str) -> list[Path]:
    paths = []
    for file, entry in files.items():
        hashes = accepted_hashes(entry)
        if not hashes:
            raise DownloadError(f"{file}: no checksum is recorded for a single-file download; "
                                "fetch the official release instead (no --base-url)")
        try:
            paths.append(_fetch_verified(base_url + file, target / file, hashes))
        except _NotFound:
            if not entry.get("optional"):
                raise DownloadError(f"{file}: not found at {base_url + file}") from None
            print(f"note: optional file {file} not offered by {base_url}; skipped", file=sys.stderr)
    return paths


def _from_archive(archive: dict[str, Any], files: dict[str, dict[str, Any]], target: Path) -> list[Path]:
    """Download the release zip, verify it, extract the listed members (verified where a hash exists)."""
    zip_path = _fetch_verified(archive["url"], target / archive["name"], {archive["sha256"]} if archive.get("sha256") else set())
    wanted = {file: entry for file, entry in files.items() if entry.get("in_archive")}
    return extract_members(zip_path, wanted, target, delete_archive=True)


def extract_members(zip_path: Path, wanted: dict[str, dict[str, Any]], target: Path, delete_archive: bool = False) -> list[Path]:
    """Extract members matched by base name; a member with a recorded hash must match it."""
    try:
        return _extract(zip_path, wanted, target)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:  # corrupt or truncated members too
        note = "; it was deleted" if delete_archive else ""
        raise DownloadError(f"{zip_path.name}: not a valid zip archive ({_reason(error)}){note}") from None
    finally:
        if delete_archive:  # verified or not, the archive is not kept next to the data
            Path(zip_path).unlink(missing_ok=True)


def _extract(zip_path: Path, wanted: dict[str, dict[str, Any]], target: Path) -> list[Path]:
    paths = []
    with zipfile.ZipFile(zip_path) as archive:
        members = {Path(info.filename).name: info for info in archive.infolist()
                   if not info.is_dir() and not Path(info.filename).name.startswith(".")
                   and "__MACOSX" not in info.filename}
        for file, entry in wanted.items():
            info = members.get(file)
            if info is None:
                raise DownloadError(f"{zip_path}: the archive has no member {file}")
            final = target / file
            part = final.with_name(file + ".part")
            with archive.open(info) as source, open(part, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK)
            official = {entry["sha256"]} if entry.get("sha256") else set()  # the archive hash covers the rest
            _verify(part, final, official, source_name=f"{zip_path.name}:{info.filename}", unverified_ok=True)
            paths.append(final)
    return paths


class _NotFound(DownloadError):
    """HTTP 404: a mirror may lack an optional file; anywhere else it is a plain DownloadError."""


def _fetch_verified(url: str, final: Path, hashes: set[str]) -> Path:
    """Download `url` to `final` via `final.part`; an existing file that verifies is kept as is."""
    if final.is_file() and hashes and sha256_of(final) in hashes:
        return final
    part = final.with_name(final.name + ".part")
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "crs-bench"})
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response, open(part, "wb") as out:
            shutil.copyfileobj(response, out, CHUNK)
    except urllib.error.HTTPError as error:
        part.unlink(missing_ok=True)
        if error.code == 404:
            raise _NotFound(f"{final.name}: not found at {url} (HTTP 404)") from None
        raise DownloadError(f"{final.name}: HTTP {error.code} from {url}; the partial file was deleted") from None
    except (OSError, http.client.HTTPException, ValueError) as error:  # URLError is an OSError; ValueError: bad URL
        part.unlink(missing_ok=True)
        raise DownloadError(f"{final.name}: download from {url} failed ({_reason(error)}); "
                            "the partial file was deleted") from None
    _verify(part, final, hashes, source_name=url, unverified_ok=False)
    return final


def _verify(part: Path, final: Path, hashes: set[str], source_name: str, unverified_ok: bool) -> None:
    """Rename `part` to `final` if its hash is accepted; otherwise delete it and raise."""
    actual = sha256_of(part)
    if hashes and actual not in hashes:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{final.name}: SHA-256 mismatch for {source_name}: got {actual}, expected "
            f"{' or '.join(sorted(hashes))}; the downloaded file was deleted")
    if not hashes and not unverified_ok:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{final.name}: no checksum recorded for {source_name}; the downloaded file was deleted")
    try:
        os.replace(part, final)
    except OSError as error:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{final.name}: cannot write {final} ({_reason(error)}); "
                            "the downloaded file was deleted") from None


def _reason(error: BaseException) -> str:
    """The error's own text on one line (a DownloadError message is always a single line)."""
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(str(text).split())
