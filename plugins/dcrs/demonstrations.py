"""Demonstration retrieval for DCRS (SYSTEMS.md §8): the pool, the leakage rules, batched search, caching.

* **Pool**: the training split only, one entry per recommender turn that has recommendation samples (its
  context, its unmasked response, its context entities and its labelled items), or per conversation sample
  (`conv` purpose: context and response). Valid and test dialogues never enter it.
* **Leakage**: a query from the training split never retrieves an entry of its own conversation (same
  dialogue id); queries of valid and test search the whole pool.
* **Search** (D1 in docs/dcrs.md): the top m pool entries by the retriever's similarity. The contexts of a
  whole split are retrieved in one `Retriever.search` call (one matrix product for `dense` / `simcse`, one
  bm25s call for `bm25`), the first time the split is seen.
* **Cache**: the [Q, m] demonstration ids of a split are stored under ``<cache_dir>/dcrs-demonstrations/``
  keyed by the dataset fingerprint, the retriever (name, parameters, and the seed for `random`), m, and a
  digest of pool and queries; the retrieval time per 1,000 queries measured when they were computed is
  stored with them, so every record reports it.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness.api import ConformanceError, Retriever, RunContext, Split

PRESETS = {"paper": {"rec": "simcse", "conv": "simcse"}, "released": {"rec": "random", "conv": "bm25"}}
RETRIEVERS = ("simcse", "bm25", "dense", "random")
QUERY_FORMAT = "text_encoder.context_text lines; bm25 adds a line 'entities: <names of the context entities>'"
FORMAT_VERSION = "1"


def resolve_retriever(preset: str, purpose: str, chosen: str | None) -> str:
    """The retriever of `purpose` ('rec' or 'conv'): `chosen` when set, else the preset's."""
    if preset not in PRESETS:
        raise ValueError(f"dcrs preset must be one of {tuple(PRESETS)}, got {preset!r}")
    return chosen or PRESETS[preset][purpose]


def merge_entities(context: Sequence[int], retrieved: Sequence[int], limit: int) -> list[int]:
    """DCRS's entity list: context entities ++ the retrieved entities not already in it (first occurrence
    order), truncated to the last `limit`, so retrieved entities are kept before any context entity."""
    if limit < 1:
        return []
    seen = set(context)
    extra = [e for e in dict.fromkeys(retrieved) if e not in seen]
    return (list(context) + extra)[-limit:]


@dataclass(frozen=True)
class Entry:
    """One demonstration: a training turn, its context and what it answered."""

    dialogue_id: str
    dialogue_index: int
    turn: int
    response: str
    entities: tuple[int, ...]  # context entities of the demonstration
    items: tuple[int, ...]  # labelled items (catalogue indices), empty for conversation entries


def rec_pool(train: Split) -> list[Entry]:
    """One entry per training recommender turn with recommendation samples; items = its distinct labels."""
    grouped: dict[tuple[int, int], list[Any]] = {}
    for sample in train.rec_samples:
        grouped.setdefault((sample.dialogue_index, sample.turn), []).append(sample)
    out = []
    for (d, t), samples in grouped.items():
        dialogue = train.dialogues[d]
        out.append(Entry(dialogue.id, d, t, dialogue.turns[t].text, samples[0].context_entities,
                         tuple(dict.fromkeys(s.label for s in samples))))
    return out


def conv_pool(train: Split) -> list[Entry]:
    """One entry per training conversation sample with a non-empty response."""
    out = []
    for sample in train.conv_samples:
        dialogue = train.dialogues[sample.dialogue_index]
        text = dialogue.turns[sample.turn].text
        if text.strip():
            out.append(Entry(dialogue.id, sample.dialogue_index, sample.turn, text,
                             _entities(dialogue.turns[:sample.turn]), ()))
    return out


class DemonstrationIndex:
    """Top-m training demonstrations for the contexts of any split (see the module docstring)."""

    def __init__(self, ctx: RunContext, pool: list[Entry], retriever: str, params: dict[str, Any] | None, m: int,
                 purpose: str):
        if retriever not in RETRIEVERS:
            raise ValueError(f"dcrs retriever must be one of {RETRIEVERS}, got {retriever!r}")
        if m < 1:
            raise ValueError(f"dcrs needs at least one demonstration (m >= 1), got {m}")
        if not pool:
            raise ValueError(f"dcrs found no training {purpose} demonstration to index")
        if ctx.registries is None:
            raise RuntimeError("dcrs builds its retriever by name: ctx.registries is missing")
        from harness.api import validate_params

        component = ctx.registries.retrievers.get(retriever)
        self.name, self.params, self.m, self.purpose = retriever, dict(params or {}), m, purpose
        validate_params("retriever", retriever, component.resolve(), self.params, skip=1)  # one-line error
        self.retriever = component.build(ctx, **self.params)
        if not isinstance(self.retriever, Retriever):
            raise ConformanceError(f"{component.describe()} does not implement Retriever (index, search)")
        self.pool, self.train = pool, ctx.train
        self.names = ctx.dataset.kg.entity_names if ctx.dataset.kg is not None else None
        self.cache = Path(ctx.cache_dir) / "dcrs-demonstrations"
        self.identity = {"fingerprint": ctx.dataset.fingerprint or ctx.dataset.name, "retriever": retriever,
                         "params": self.params, "m": m, "purpose": purpose, "format": FORMAT_VERSION,
                         **({"seed": int(ctx.seed)} if retriever == "random" else {})}
        self.pool_digest = _digest([f"{e.dialogue_id}/{e.turn}" for e in pool])
        self.indexed = False
        self.timings: dict[str, dict[str, Any]] = {}  # split -> seconds per 1,000 queries, queries, cached
        self._memo: dict[tuple[str, str], np.ndarray] = {}
        self._rows: dict[tuple[str, str, int], np.ndarray] = {}

    def text(self, turns: Sequence[Any], entities: Sequence[int]) -> str:
        """What the retriever sees of a context (`QUERY_FORMAT`)."""
        from plugins.models.text_encoder import context_text

        body = context_text(turns)
        if self.name == "bm25" and self.names is not None and entities:
            body += "\nentities: " + " ".join(self.names[e] for e in entities)
        return body

    def _ensure_index(self) -> None:
        if not self.indexed:
            turns = [self.train.dialogues[e.dialogue_index].turns[:e.turn] for e in self.pool]
            self.retriever.index([self.text(t, e.entities) for t, e in zip(turns, self.pool)])
            self.indexed = True

    def retrieve(self, split: Split, keys: Sequence[tuple[int, int]], entities: Sequence[Sequence[int]]) -> np.ndarray:
        """[Q, m] pool positions (-1: none) for the contexts ``split.dialogues[d].turns[:t]`` of `keys`."""
        ids = [split.dialogues[d].id for d, _ in keys]
        token = (split.name, _digest([f"{i}/{t}" for i, (_, t) in zip(ids, keys)]))
        if token in self._memo:
            return self._memo[token]
        key = hashlib.sha256(json.dumps({**self.identity, "pool": self.pool_digest, "split": split.name,
                                         "queries": token[1]}, sort_keys=True).encode()).hexdigest()[:24]
        path = self.cache / f"{key}.npz"
        found = _load(path)
        if found is not None and found[0].shape == (len(keys), self.m):
            result, seconds = found
            self.timings[split.name] = {"seconds_per_1000_queries": seconds, "queries": len(keys), "cached": True}
        else:
            self._ensure_index()
            exclude = None
            if split.name == "train":  # never the query's own conversation
                by_dialogue: dict[str, list[int]] = {}
                for position, entry in enumerate(self.pool):
                    by_dialogue.setdefault(entry.dialogue_id, []).append(position)
                exclude = [by_dialogue.get(i, []) for i in ids]
            texts = [self.text(split.dialogues[d].turns[:t], e) for (d, t), e in zip(keys, entities)]
            started = time.perf_counter()
            result, _ = self.retriever.search(texts, self.m, exclude)
            seconds = (time.perf_counter() - started) / max(1, len(keys)) * 1000.0
            result = np.asarray(result, dtype=np.int64)
            _save(path, result, seconds)
            self.timings[split.name] = {"seconds_per_1000_queries": seconds, "queries": len(keys), "cached": False}
        self._memo[token] = result
        return result

    def for_samples(self, split: Split, samples: Sequence[Any], whole: Sequence[Any] = ()) -> np.ndarray:
        """[B, m] demonstrations of each sample's context (its dialogue_index and turn); see `for_contexts`."""
        return self.for_contexts(split, [(s.dialogue_index, s.turn) for s in samples],
                                 [(s.dialogue_index, s.turn) for s in whole])

    def for_contexts(self, split: Split, contexts: Sequence[tuple[int, int]],
                     whole: Sequence[tuple[int, int]] = ()) -> np.ndarray:
        """[B, m] demonstrations of the contexts ``split.dialogues[d].turns[:t]`` for (d, t) in `contexts`.
        The first time a context is missing, every context of `whole` (e.g. the split's samples) and of
        `contexts` is retrieved in one search, so a split costs one search however it is batched."""
        keys = [(split.name, split.dialogues[d].id, t) for d, t in contexts]
        if any(key not in self._rows for key in keys):
            todo: dict[tuple[str, str, int], tuple[int, int]] = {}
            for d, t in list(whole) + list(contexts):
                key = (split.name, split.dialogues[d].id, t)
                if key not in self._rows and key not in todo:
                    todo[key] = (d, t)
            positions = list(todo.values())
            entities = [_entities(split.dialogues[d].turns[:t]) for d, t in positions]
            found = self.retrieve(split, positions, entities)
            self._rows.update({key: row for key, row in zip(todo, found)})
        return np.stack([self._rows[key] for key in keys]) if keys else np.zeros((0, self.m), dtype=np.int64)

    def retrieved_entities(self, row: Sequence[int], item_entities: Sequence[int]) -> list[int]:
        """The demonstrations' context entities and labelled items (as KG entities), best demonstration first."""
        out: list[int] = []
        for position in row:
            if position >= 0:
                entry = self.pool[position]
                out += [*entry.entities, *(item_entities[i] for i in entry.items)]
        return out

    def describe(self) -> dict[str, Any]:
        details = self.retriever.describe() if hasattr(self.retriever, "describe") else {}
        return {"retriever": self.name, "params": self.params, "demonstrations": self.m, "pool": len(self.pool),
                "pool_split": "train", "query_format": QUERY_FORMAT,
                "exclusion": "training queries never retrieve their own conversation (dialogue id)",
                "retrieval": self.timings, "retriever_details": details}


def _entities(turns: Sequence[Any]) -> tuple[int, ...]:
    """Context entities of `turns`, de-duplicated at first mention (as `harness.data.build_samples`)."""
    return tuple(dict.fromkeys(entity for turn in turns for entity in turn.entities))


def _digest(parts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _load(path: Path) -> tuple[np.ndarray, float] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["ids"], float(data["seconds"])
    except (OSError, ValueError, KeyError):
        return None


def _save(path: Path, ids: np.ndarray, seconds: float) -> None:
    import io

    from harness.api import write_atomic

    buffer = io.BytesIO()
    np.savez(buffer, ids=ids, seconds=np.float64(seconds))
    write_atomic(path, buffer.getvalue())
