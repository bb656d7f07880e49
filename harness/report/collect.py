"""What the report reads besides the leaderboard tables: the runs of each row, their stored outputs, and,
when the dataset can be loaded, the items' training popularity, tiers and titles and the test contexts.

Nothing here computes a metric: the numbers on the pages are the leaderboard's (`render_json`). The stored
outputs are read for what no metric holds: which items the top-10 lists contain (the long-tail curve) and
the sample browser.
"""
from __future__ import annotations

import gzip
import json
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..results import RECORD_FILE, RecordError, read_record, samples_path

TOP_K = 10  # the lists the report shows and counts: the leaderboard's headline cut-off
CONTEXT_TURNS = 6  # the sample browser shows the last turns of a context
# Ranking rows as `evaluation.sample_rows` writes them, matched in the whole file at once (fast); a file with
# any other line (conversation rows, another writer's key order) is read line by line as JSON.
_REC_ROWS = re.compile(rb'^\{"id":"([^"\\\n]*)","setting":"([^"\\\n]+)","context":(\d+),"label":(-?\d+),'
                       rb'"top":\[(-?\d+(?:,-?\d+){%d})[\],][^\n]*$' % (TOP_K - 1), re.M)


@dataclass
class RecRows:
    """The ranking rows of one run and setting, in stored order, top lists cut at `TOP_K`."""

    ids: list[str]
    contexts: np.ndarray  # [n] row of the distinct context
    labels: np.ndarray  # [n] native item ids
    tops: np.ndarray  # [n, <= TOP_K] native item ids, best first

    def distinct_tops(self) -> np.ndarray:
        """One top list per distinct context (samples of one context share their list)."""
        _, first = np.unique(self.contexts, return_index=True)
        return self.tops[np.sort(first)]


@dataclass
class RunOutputs:
    rec: dict[str, RecRows] = field(default_factory=dict)  # setting -> rows
    conv: list[dict[str, Any]] = field(default_factory=list)  # conversation rows, as stored


def read_outputs(run_dir: Path, record: dict[str, Any]) -> RunOutputs:
    """The stored outputs of a run, verified against the record's SHA-256 (`results.samples_path`)."""
    path = samples_path(run_dir, record)
    try:
        text = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as error:
        raise RecordError(f"{path}: not a readable gzip file: {error}") from None
    matches = _REC_ROWS.findall(text)
    if len(matches) == text.count(b"\n") + (0 if text.endswith(b"\n") or not text else 1):
        return _from_matches(matches)
    return _from_json(path, text)


def _from_matches(matches: list[tuple[bytes, ...]]) -> RunOutputs:
    outputs = RunOutputs()
    if not matches:
        return outputs
    def numbers(parts: Iterable[bytes]) -> np.ndarray:
        return np.fromstring(b",".join(parts), dtype=np.int64, sep=",")  # text mode: parses decimal numbers

    settings = np.array([m[1] for m in matches])
    contexts = numbers(m[2] for m in matches)
    labels = numbers(m[3] for m in matches)
    tops = numbers(m[4] for m in matches).reshape(len(matches), TOP_K)
    for setting in dict.fromkeys(settings.tolist()):
        chosen = np.flatnonzero(settings == setting)
        outputs.rec[setting.decode()] = RecRows([matches[i][0].decode() for i in chosen], contexts[chosen],
                                                labels[chosen], tops[chosen])
    return outputs


def _from_json(path: Path, text: bytes) -> RunOutputs:
    outputs = RunOutputs()
    rec: dict[str, list[tuple[str, int, int, list[int]]]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise RecordError(f"{path}:{number}: invalid JSON: {error.msg}") from None
        if row.get("task") == "conv":
            outputs.conv.append(row)
        elif "top" in row and "setting" in row:
            rows = rec.setdefault(row["setting"], [])
            rows.append((str(row.get("id")), int(row.get("context", len(rows))), int(row["label"]),
                         [int(item) for item in row["top"][:TOP_K]]))
    for setting, rows in rec.items():
        width = max(len(r[3]) for r in rows)
        tops = np.full((len(rows), width), -1, dtype=np.int64)
        for i, r in enumerate(rows):
            tops[i, :len(r[3])] = r[3]
        outputs.rec[setting] = RecRows([r[0] for r in rows], np.array([r[1] for r in rows], dtype=np.int64),
                                       np.array([r[2] for r in rows], dtype=np.int64), tops)
    return outputs


@dataclass
class Run:
    run_dir: Path
    record: dict[str, Any]
    _outputs: RunOutputs | None = None

    @property
    def seed(self) -> int:
        return self.record["config"]["seed"]

    def outputs(self) -> RunOutputs:
        if self._outputs is None:
            self._outputs = read_outputs(self.run_dir, self.record)
        return self._outputs


@dataclass
class Group:
    """The runs of one configuration (its seeds): one page of the report."""

    config_hash: str
    runs: list[Run]
    counts: dict[tuple, np.ndarray] = field(default_factory=dict)  # `top_counts` per setting

    @property
    def page(self) -> str:
        return f"runs/{self.config_hash[:16]}.html"

    @property
    def record(self) -> dict[str, Any]:
        return self.runs[0].record


def groups_of(tables: Iterable[Any]) -> dict[str, Group]:
    """config hash -> the runs the leaderboard aggregated into that row (its `run_dirs`), by seed."""
    groups: dict[str, Group] = {}
    for table in tables:
        for row in table.rows:
            group = groups.get(row.config_hash)
            if group is None:
                group = groups[row.config_hash] = Group(row.config_hash, [])
            known = {run.run_dir for run in group.runs}
            for run_dir in row.run_dirs:
                if run_dir not in known:
                    group.runs.append(Run(run_dir, read_record(Path(run_dir) / RECORD_FILE)))
                    known.add(run_dir)
    for group in groups.values():
        group.runs.sort(key=lambda run: (run.seed, str(run.run_dir)))
    return groups


TIER_NAMES = ("head", "body", "tail", "cold")


@dataclass
class Items:
    """The catalogue of one dataset as the runs saw it: training popularity and label counts, tiers (with the
    runs' thresholds), titles, and the last turns of every test context."""

    ids: np.ndarray  # native ids in catalogue order
    titles: list[str]
    popularity: np.ndarray
    label_counts: np.ndarray
    thresholds: tuple[int, int]  # head_min, tail_max
    contexts: dict[str, list[list[str]]] = field(default_factory=dict)  # "split/dialogue/turn" -> [[role, text]]

    def __post_init__(self) -> None:
        from ..popularity import TierThresholds

        self.index = {int(native): position for position, native in enumerate(self.ids.tolist())}
        thresholds = TierThresholds(*self.thresholds)
        self.tiers = ["cold" if count == 0 else thresholds.tier_of(int(count)) for count in self.popularity]
        # rank by training popularity, then training labels, then catalogue order (stable, deterministic)
        order = np.lexsort((np.arange(self.popularity.size), -self.label_counts, -self.popularity))
        self.rank = np.empty(self.popularity.size, dtype=np.int64)
        self.rank[order] = np.arange(1, self.popularity.size + 1)
        self.order = order  # catalogue positions from the most to the least popular

    def describe(self, native: int) -> dict[str, Any]:
        position = self.index.get(int(native))
        if position is None:
            return {"t": f"item {native}", "tier": None, "r": None}
        return {"t": self.titles[position], "tier": self.tiers[position], "r": int(self.rank[position])}

    def context(self, key: str) -> list[list[str]] | None:
        """The last `CONTEXT_TURNS` turns before a test sample's turn (`context_key`) as [role, text] pairs."""
        return self.contexts.get(key)


def context_key(uid: str, conversation: bool = False) -> str:
    """``test/12/4`` for the ranking sample ``test/12/4/0`` (its last part numbers the turn's labels) and for
    the conversation sample ``test/12/4``."""
    return uid if conversation else uid.rsplit("/", 1)[0]


ITEMS_FORMAT = 1


def _items_path(cache_dir: Path, record: dict[str, Any]) -> Path:
    name, (fingerprint, head_min, tail_max) = record["dataset"]["name"], items_key(record)
    return Path(cache_dir) / "report" / f"items-{name}-{fingerprint[:16]}-h{head_min}-t{tail_max}.json.gz"


def load_items(record: dict[str, Any], registries: Any, data_dir: Path | None, cache_dir: Path) -> Items | str:
    """The `Items` of the record's dataset, or a sentence saying why not (no data directory, a changed
    dataset): the report then shows item ids without tiers and leaves out the long-tail curve.

    The dataset is loaded through the harness's cache and must have the fingerprint the runs stored; what the
    report takes from it is kept under ``<cache>/report/`` (gzipped JSON, keyed by that fingerprint and the
    tier thresholds), so a rebuild reads a few kilobytes instead of the dataset."""
    path = _items_path(cache_dir, record)
    cached = _read_items(path, record)
    if cached is not None:
        return cached
    from ..data import DataError
    from ..errors import RunError
    from ..loading import load
    from ..popularity import TierThresholds, compute_statistics
    from ..registry import RegistryError
    from ..results import write_atomic

    config = record["config"]
    name = config["dataset"]["name"]
    try:
        component = registries.datasets.get(name)
        dataset = load(component, config["dataset"].get("params") or {}, data_dir, cache_dir, config.get("limit"))
    except (DataError, RunError, RegistryError, OSError, ValueError) as error:
        return f"dataset '{name}' not loaded ({error}): items are shown by id, without tiers"
    if dataset.fingerprint != record["dataset"]["fingerprint"]:
        return (f"dataset '{name}' now has fingerprint {dataset.fingerprint[:12]}, the runs used "
                f"{record['dataset']['fingerprint'][:12]}: items are shown by id, without tiers")
    thresholds = TierThresholds(**config.get("tiers", {}))
    train = dataset.splits["train"]
    stats = compute_statistics(dataset.num_items, train.dialogues, train.rec_samples, thresholds)
    contexts: dict[str, list[list[str]]] = {}
    test = dataset.splits.get("test")
    samples = [(s, False) for s in test.rec_samples] + [(s, True) for s in test.conv_samples] if test else []
    for sample, conversation in samples:
        key = context_key(sample.uid, conversation)
        if key not in contexts:
            turns = test.context(sample)
            earlier = [["…", f"{len(turns) - CONTEXT_TURNS} earlier turns"]] if len(turns) > CONTEXT_TURNS else []
            contexts[key] = earlier + [[turn.role, turn.text] for turn in turns[-CONTEXT_TURNS:]]
    items = Items(np.asarray(dataset.catalogue.ids, dtype=np.int64), list(dataset.catalogue.titles),
                  np.asarray(stats.popularity, dtype=np.int64), np.asarray(stats.label_counts, dtype=np.int64),
                  (thresholds.head_min, thresholds.tail_max), contexts)
    body = {"format": ITEMS_FORMAT, "fingerprint": record["dataset"]["fingerprint"], "thresholds": list(items.thresholds),
            "ids": items.ids.tolist(), "titles": items.titles, "popularity": items.popularity.tolist(),
            "label_counts": items.label_counts.tolist(), "contexts": contexts}
    try:
        write_atomic(path, gzip.compress(json.dumps(body, separators=(",", ":")).encode(), compresslevel=6, mtime=0))
    except OSError:
        pass  # a read-only cache: the next build loads the dataset again
    return items


def _read_items(path: Path, record: dict[str, Any]) -> Items | None:
    """The cached items, or None for a missing, unreadable or malformed entry, or one of other data."""
    try:
        body = json.loads(gzip.decompress(path.read_bytes()))
        _, head_min, tail_max = items_key(record)
        if (body.get("format") != ITEMS_FORMAT or body.get("fingerprint") != record["dataset"]["fingerprint"]
                or body.get("thresholds") != [head_min, tail_max]):
            return None
        ids, titles = body["ids"], body["titles"]
        popularity, labels, contexts = body["popularity"], body["label_counts"], body["contexts"]
        size = len(ids)
        if not (len(titles) == len(popularity) == len(labels) == size and isinstance(contexts, dict)
                and all(isinstance(v, int) and not isinstance(v, bool) for v in (*ids, *popularity, *labels))
                and all(isinstance(t, str) for t in titles)
                and all(isinstance(turns, list) and all(isinstance(turn, list) and len(turn) == 2 and
                                                        all(isinstance(x, str) for x in turn) for turn in turns)
                        for turns in contexts.values())):
            return None
        return Items(np.asarray(ids, dtype=np.int64), titles, np.asarray(popularity, dtype=np.int64),
                     np.asarray(labels, dtype=np.int64), (head_min, tail_max), contexts)
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError, AttributeError):
        return None


def items_key(record: dict[str, Any]) -> tuple:
    tiers = record["config"].get("tiers", {})
    return record["dataset"]["fingerprint"], tiers.get("head_min"), tiers.get("tail_max")


def top_counts(group: Group, setting: str, items: Items) -> np.ndarray:
    """How often each catalogue position is in the group's top-10 lists: each distinct context once per seed."""
    key = (setting, id(items))
    if key not in group.counts:
        counts = np.zeros(len(items.ids), dtype=np.int64)
        for run in group.runs:
            rows = run.outputs().rec.get(setting)
            if rows is not None:
                natives = rows.distinct_tops().ravel()
                positions = np.searchsorted(items.ids, natives)
                known = (positions < items.ids.size) & (items.ids[np.minimum(positions, items.ids.size - 1)] == natives)
                counts += np.bincount(positions[known], minlength=items.ids.size)
        group.counts[key] = counts
    return group.counts[key]
