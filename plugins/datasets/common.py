"""Shared helpers of the dataset plugins: locating plain-or-gzipped files, reading JSON and JSON lines
with errors that name the file, line and field, hashing, and text normalisation.

Kept free of heavy imports: plugin modules import this at `bench --help` time.
"""
from __future__ import annotations

import gzip
import html
import io
import json
import re
from pathlib import Path
from typing import Any, Iterator

from harness.data import DataError, reading
from harness.dataset_cache import content_sha256

_WHITESPACE = re.compile(r"\s+")


def dataset_dir(data_dir: Path, name: str) -> Path:
    """`data_dir/name` when it exists (a data root holding several datasets), else `data_dir` itself."""
    data_dir = Path(data_dir)
    sub = data_dir / name
    return sub if sub.is_dir() else data_dir


def find_file(directory: Path, name: str, required: bool = True) -> Path | None:
    """The plain file `name` or its gzip copy `name.gz` (plain preferred); DataError when required and absent."""
    plain = Path(directory) / name
    if plain.is_file():
        return plain
    packed = plain.with_name(name + ".gz")
    if packed.is_file():
        return packed
    if required:
        raise DataError(str(plain), None, None, f"file is missing (looked for {name} and {name}.gz in {directory})")
    return None


def open_text(path: Path) -> io.TextIOBase:
    """Open a plain or gzipped UTF-8 text file (gzip chosen by the `.gz` suffix)."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
        return open(path, encoding="utf-8", newline="")
    except FileNotFoundError:
        raise DataError(str(path), None, None, "file is missing") from None


def read_text(path: Path) -> str:
    with reading(path), open_text(path) as handle:
        return handle.read()


def read_json(path: Path) -> Any:
    """One JSON document; a syntax error names the line where the parser stopped."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(str(path), error.lineno, None, f"invalid JSON: {error.msg} (column {error.colno})") from None


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed value) for every non-blank line; a bad line names its number."""
    with reading(path), open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(str(path), number, None,
                                f"invalid JSON line (truncated?): {error.msg} at column {error.colno}") from None


def require(obj: Any, key: str, kind: type | tuple[type, ...], path: Path, line: int | None, field: str) -> Any:
    """`obj[key]` checked for presence and type; DataError naming `field` otherwise."""
    if not isinstance(obj, dict):
        raise DataError(str(path), line, field.rsplit(".", 1)[0] or field, f"expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise DataError(str(path), line, field, "is missing")
    value = obj[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(str(path), line, field, f"expected {names}, got {type(value).__name__}")
    return value


def collapse(text: str) -> str:
    """Whitespace runs become one space; ends stripped."""
    return _WHITESPACE.sub(" ", text).strip()


def collapse_unescape(text: str) -> str:
    """PROTOCOL.md §1.3 ReDial order: collapse whitespace, unescape HTML entities (collapse again, in
    case an entity such as &nbsp; produced whitespace)."""
    return collapse(html.unescape(collapse(text)))


def sha256_content(path: Path) -> str:
    """SHA-256 of the *decompressed* content, so a file and its gzip copy hash alike (provenance); the
    fingerprint's own hash, so the two can never disagree."""
    return content_sha256(path)


def file_provenance(paths: list[Path]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """({file name: {path, sha256}}, {decompressed name: sha256}) for a dataset's `info`.

    The path is relative to the data directory (`<dataset>/<file>`): records are committed and shared, so
    they must not carry one machine's absolute paths. The content hash identifies the file anyway."""
    hashes = {path.name.removesuffix(".gz"): sha256_content(path) for path in paths}
    files = {path.name: {"path": f"{path.parent.name}/{path.name}", "sha256": hashes[path.name.removesuffix(".gz")]}
             for path in paths}
    return files, hashes
