"""On-disk cache of processed datasets, keyed by a fingerprint of the inputs and the options.

fingerprint = SHA-256 over (dataset name, component version, sorted params, and for every input
file its name and the SHA-256 of its decompressed content). A changed file or option therefore
gives a new fingerprint (a new cache entry) and the fingerprint goes into every result record.
Content hashes make a file and its `.gz` copy fingerprint alike. Every load hashes every input file:
no hash is trusted from a file's size and mtime, which an edit can keep (`cp -p`, `touch -r`).

Entries also carry a *code stamp* (hash of every module of the loader's package, harness/data.py and
this module): a cache written by other loader code is treated as a miss without changing the fingerprint.

Entries are data only, gzipped JSON (`datasets/<name>-<fingerprint[:16]>.json.gz`) from which the dataclasses
are rebuilt and validated: nothing is unpickled, so a planted entry cannot run code, and an unreadable or
malformed entry is a miss (rebuilt), never an error.
"""
from __future__ import annotations

import gzip
import hashlib
import inspect
import json
import sys
from pathlib import Path
from operator import attrgetter
from typing import Any, Callable, Iterable, Sequence

from .data import (Catalogue, ConvSample, Dataset, Dialogue, KnowledgeGraph, RecSample, Split, Turn, build_samples,
                   check_dataset, reading)
from .registry import Component
from .results import write_atomic

CACHE_FORMAT = 2  # 1 was a pickle (`.pkl`); those entries are never read


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


def fingerprint(component: Component, params: dict[str, Any], files: Iterable[Path]) -> str:
    """The dataset fingerprint (hex SHA-256); `files` empty for datasets without input files."""
    file_hashes = [[Path(file).name.removesuffix(".gz"), content_sha256(file)] for file in files]
    key = {
        "dataset": component.name,
        "version": component.version,
        "params": sorted((str(k), v) for k, v in params.items()),
        "files": sorted(file_hashes),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=repr).encode("utf-8")).hexdigest()


def loader_sources(factory: Any) -> list[Path]:
    """Every module the loader may run: all .py files under its package directory (helpers such as
    plugins/datasets/common.py included), or the module alone when it is top-level (a --plugin file)."""
    module = inspect.getmodule(factory)
    file = getattr(module, "__file__", None)
    if not file:
        return []
    path = Path(file).resolve()
    if not getattr(module, "__package__", None):
        return [path]
    return sorted(path.parent.rglob("*.py"))


def code_stamp(component: Component) -> str:
    """Hash of harness/data.py (the sample rules), this module (the entry format) and the loader's modules."""
    digest = hashlib.sha256()
    here = Path(__file__).resolve()
    own = [here.with_name("data.py"), here]
    for source in own + loader_sources(component.resolve()):
        digest.update(f"\0{source.name}\0".encode())
        try:
            digest.update(source.read_bytes())
        except OSError:
            digest.update(str(source).encode())
    return digest.hexdigest()


def cache_path(cache_dir: Path, name: str, fp: str) -> Path:
    return Path(cache_dir) / "datasets" / f"{name}-{fp[:16]}.json.gz"


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
    fp = fingerprint(component, params, files)
    stamp = code_stamp(component)
    path = cache_path(cache_dir, component.name, fp)

    cached = read_entry(path, stamp, fp)
    if cached is not None:
        check_dataset(cached, list_length)
        return cached

    dataset = component.resolve()(Path(data_dir) if data_dir is not None else None, **params)
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset '{component.name}' factory returned {type(dataset).__name__}, not harness.data.Dataset")
    dataset.fingerprint = fp
    if not any(split.rec_samples or split.conv_samples for split in dataset.splits.values()):
        dataset.build_samples()  # the loader returned dialogues only, as the dataset interface allows
    check_dataset(dataset, list_length)
    _write_entry(path, stamp, fp, dataset)
    return dataset


def read_entry(path: Path, stamp: str, fp: str) -> Dataset | None:
    """The cached dataset, or None for a missing, stale (other code or inputs), unreadable or malformed entry."""
    if not path.is_file():
        return None
    try:
        with gzip.open(path, "rb") as handle:
            payload = json.load(handle)
        if (not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT
                or payload.get("code_stamp") != stamp or payload.get("fingerprint") != fp):
            return None
        dataset = decode(payload.get("dataset"))
    except Exception:  # noqa: BLE001 - whatever is wrong with the entry, it is just a miss
        return None
    dataset.fingerprint = fp
    return dataset


def _write_entry(path: Path, stamp: str, fp: str, dataset: Dataset) -> None:
    """Write the entry; a dataset that JSON cannot hold exactly, or an unwritable cache, only skips caching."""
    try:
        body = encode(dataset)
    except NotPlain as error:
        print(f"warning: dataset cache not written ({path}): {error}", file=sys.stderr)
        return
    payload = {"format": CACHE_FORMAT, "code_stamp": stamp, "fingerprint": fp, "dataset": body}
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    try:
        write_atomic(path, gzip.compress(text.encode("utf-8"), compresslevel=1, mtime=0))
    except OSError as error:  # an unwritable cache must not fail the run
        print(f"warning: dataset cache not written ({path}): {error}", file=sys.stderr)


# --- the entry format: plain JSON values in, validated dataclasses out ---------------------------------


class NotPlain(ValueError):
    """A free-form field (info, metadata, dialogue meta) that JSON would not give back unchanged."""


class Malformed(ValueError):
    """A cache entry that does not have the shape this module writes."""


def _exactly(kind: type) -> Callable[[Any], Any]:
    """A check that a JSON value has exactly this type (so a bool is no int and a string no list)."""
    def check(value: Any) -> Any:
        if type(value) is not kind:
            raise Malformed(f"expected {kind.__name__}, got {type(value).__name__}")
        return value
    return check


def _tuple_of(kind: type) -> Callable[[Any], tuple]:
    """A check that a JSON value is a list of exactly this type, given back as the tuple the dataclasses hold."""
    def check(value: Any) -> tuple:
        if type(value) is not list or not all(type(v) is kind for v in value):
            raise Malformed(f"expected a list of {kind.__name__}")
        return tuple(value)
    return check


_str, _int, _bool, _list, _object = (_exactly(kind) for kind in (str, int, bool, list, dict))
_ints, _strs = _tuple_of(int), _tuple_of(str)


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


class Record:
    """A frozen dataclass written as the list of its field values, read back through one check per field."""

    def __init__(self, cls: type, checks: Sequence[Callable[[Any], Any]]):
        names = [f.name for f in cls.__dataclass_fields__.values()]
        assert len(names) == len(checks), f"{cls.__name__}: one check per field"  # a new field needs a check
        self.cls, self.checks, self.values = cls, tuple(checks), attrgetter(*names)

    def encode(self, obj: Any) -> tuple:
        return self.values(obj)

    def decode(self, row: Any) -> Any:
        if type(row) is not list or len(row) != len(self.checks):
            raise Malformed(f"{self.cls.__name__}: expected a list of {len(self.checks)} values")
        return self.cls(*(check(value) for check, value in zip(self.checks, row)))


TURN = Record(Turn, (_str, _str, _ints, _ints, _str))
REC_SAMPLE = Record(RecSample, (_str, _int, _int, _int, _ints, _ints, _bool, _int))
CONV_SAMPLE = Record(ConvSample, (_str, _int, _int, _str))
KG_FIELDS = {"num_entities": _int, "relation_names": lambda v: list(_strs(v)), "heads": lambda v: list(_ints(v)),
             "relations": lambda v: list(_ints(v)), "tails": lambda v: list(_ints(v)),
             "item_entities": lambda v: list(_ints(v)), "entity_names": _optional(lambda v: list(_strs(v))),
             "self_loop_relation": _optional(_int)}


def _plain(value: Any, what: str) -> Any:
    """`value` itself when JSON gives it back equal (no tuples, sets, int keys, NaN), else NotPlain."""
    try:
        same = json.loads(json.dumps(value)) == value
    except (TypeError, ValueError) as error:
        raise NotPlain(f"{what} is not plain JSON: {error}") from None
    if not same:
        raise NotPlain(f"{what} does not survive a JSON round trip (tuples, sets, non-string keys or NaN)")
    return value


def encode(dataset: Dataset) -> dict[str, Any]:
    """The dataset as plain JSON values; NotPlain when a free-form field would not come back unchanged."""
    catalogue, kg = dataset.catalogue, dataset.kg
    metadata = list(catalogue.metadata) if catalogue.metadata is not None else None
    return {
        "name": dataset.name,
        "dedup_turn_labels": dataset.dedup_turn_labels,
        "info": _plain(dataset.info, "dataset.info"),
        "catalogue": {"ids": catalogue.ids, "titles": catalogue.titles,
                      "metadata": _plain(metadata, "catalogue.metadata")},
        "kg": None if kg is None else {name: getattr(kg, name) for name in KG_FIELDS},
        "splits": [_encode_split(split, dataset.dedup_turn_labels) for split in dataset.splits.values()],
    }


def _encode_split(split: Split, dedup_turn_labels: bool) -> dict[str, Any]:
    _plain([dialogue.meta for dialogue in split.dialogues], f"{split.name} dialogue meta")
    return {
        "name": split.name,
        "source": split.source,
        "dialogues": [[d.id, d.synthetic, d.meta, [TURN.encode(t) for t in d.turns]] for d in split.dialogues],
        "samples": _encode_samples(split, dedup_turn_labels),
    }


def _encode_samples(split: Split, dedup_turn_labels: bool) -> dict[str, list] | None:
    """None when the protocol rules rebuild the samples exactly (the usual case: the entry stays small and
    reads faster); else the factory's own samples, which the cache must give back unchanged."""
    rebuilt = build_samples(split.name, split.dialogues, dedup_turn_labels)
    if rebuilt == (split.rec_samples, split.conv_samples):
        return None
    return {"rec": [REC_SAMPLE.encode(s) for s in split.rec_samples],
            "conv": [CONV_SAMPLE.encode(s) for s in split.conv_samples]}


def decode(body: Any) -> Dataset:
    """The Dataset rebuilt from `encode`'s output, checked for shape and internal consistency (Malformed)."""
    body = _object(body)
    catalogue = _object(body["catalogue"])
    metadata = _optional(_list)(catalogue["metadata"])
    if metadata is not None and not all(type(entry) is dict for entry in metadata):
        raise Malformed("catalogue metadata: expected a list of objects")
    kg = _optional(_object)(body["kg"])
    dedup_turn_labels = _bool(body["dedup_turn_labels"])
    splits = [_decode_split(split, dedup_turn_labels) for split in _list(body["splits"])]
    dataset = Dataset(
        name=_str(body["name"]),
        catalogue=Catalogue(_ints(catalogue["ids"]), _strs(catalogue["titles"]),
                            tuple(metadata) if metadata is not None else None),
        splits={split.name: split for split in splits},
        kg=None if kg is None else KnowledgeGraph(**{name: check(kg[name]) for name, check in KG_FIELDS.items()}),
        dedup_turn_labels=dedup_turn_labels,
        info=_object(body["info"]),
    )
    if len(dataset.splits) != len(splits):
        raise Malformed("two splits share a name")
    for split in splits:
        _check_indices(split, dataset.num_items)
    return dataset


def _decode_split(body: Any, dedup_turn_labels: bool) -> Split:
    body = _object(body)
    split = Split(name=_str(body["name"]), dialogues=[_decode_dialogue(row) for row in _list(body["dialogues"])],
                  source=_str(body["source"]))
    samples = _optional(_object)(body["samples"])
    if samples is None:
        split.rec_samples, split.conv_samples = build_samples(split.name, split.dialogues, dedup_turn_labels)
    else:
        split.rec_samples = [REC_SAMPLE.decode(row) for row in _list(samples["rec"])]
        split.conv_samples = [CONV_SAMPLE.decode(row) for row in _list(samples["conv"])]
    return split


def _decode_dialogue(row: Any) -> Dialogue:
    if type(row) is not list or len(row) != 4:
        raise Malformed("dialogue: expected [id, synthetic, meta, turns]")
    return Dialogue(_str(row[0]), [TURN.decode(turn) for turn in _list(row[3])], _bool(row[1]), _object(row[2]))


def _check_indices(split: Split, num_items: int) -> None:
    """Items and labels index the catalogue, samples point at an existing turn: a well-typed but
    inconsistent entry would otherwise fail (or mislead) far from here."""
    items = [item for dialogue in split.dialogues for turn in dialogue.turns for item in turn.items]
    items += [sample.label for sample in split.rec_samples]
    if items and not (0 <= min(items) and max(items) < num_items):
        raise Malformed(f"{split.name}: an item index is outside the catalogue")
    for sample in (*split.rec_samples, *split.conv_samples):
        if not (0 <= sample.dialogue_index < len(split.dialogues)
                and 0 <= sample.turn < len(split.dialogues[sample.dialogue_index].turns)):
            raise Malformed(f"{split.name}: sample {sample.uid} points at no turn")
