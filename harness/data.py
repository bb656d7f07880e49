"""The one in-memory representation every dataset plugin produces, and the sample protocol.

Datasets hand over *dialogues* (merged turns with their mentions); the harness builds the
recommendation and conversation samples from them with the rules of PROTOCOL.md §1.4-1.5, so that
augmenters can add dialogues before sample construction and every dataset is cut the same way.

Items are addressed by their *index* in the catalogue, which is sorted by native item id: breaking
ties by ascending index is therefore breaking ties by ascending item id (PROTOCOL.md §3.1).
"""
from __future__ import annotations

import gzip
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

SEEKER = "seeker"
RECOMMENDER = "recommender"
ROLES = (SEEKER, RECOMMENDER)
SPLITS = ("train", "valid", "test")
SETTINGS = ("standard", "novel")
MOVIE_PLACEHOLDER = "<movie>"


class DataError(ValueError):
    """Bad input data; the message names the file, line and field."""

    def __init__(self, file: str, line: int | None, field_name: str | None, message: str):
        where = str(file) + (f":{line}" if line is not None else "")
        what = f" field '{field_name}'" if field_name else ""
        super().__init__(f"{where}:{what} {message}".replace(": ", ": ", 1))
        self.file, self.line, self.field, self.detail = str(file), line, field_name, message


GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)  # truncated stream, not gzip at all, corrupt deflate data
READ_ERRORS = (OSError, UnicodeDecodeError, *GZIP_ERRORS)


def unreadable(path: Any, error: BaseException) -> DataError:
    """The DataError for a file that cannot be read; a damaged gzip says so (the bare error names no file)."""
    if isinstance(error, GZIP_ERRORS):
        return DataError(str(path), None, None, f"truncated or not gzip: {error}")
    return DataError(str(path), None, None, f"cannot read: {error}")


@contextmanager
def reading(path: Any) -> Iterator[None]:
    """Read errors inside the block become a DataError naming `path`."""
    try:
        yield
    except READ_ERRORS as error:
        raise unreadable(path, error) from None


@dataclass(frozen=True)
class Turn:
    """One merged turn: consecutive messages of one role joined with a space."""

    role: str
    text: str  # rendered text, what models read (titles in place of @ids)
    items: tuple[int, ...] = ()  # catalogue indices mentioned, in text order, duplicates kept
    entities: tuple[int, ...] = ()  # KG entity ids mentioned (non-movie entities, then movies)
    masked_text: str = ""  # conversation reference form: movie mentions replaced by <movie>


@dataclass
class Dialogue:
    id: str
    turns: list[Turn]
    synthetic: bool = False  # produced by an augmenter; never allowed into valid or test
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalogue:
    """Candidate items, sorted by native id; position in the tuples is the item index."""

    ids: tuple[int, ...]
    titles: tuple[str, ...]
    metadata: tuple[dict[str, Any], ...] | None = None

    def __post_init__(self) -> None:
        if list(self.ids) != sorted(set(self.ids)):
            raise ValueError("catalogue ids must be unique and ascending")
        if len(self.titles) != len(self.ids):
            raise ValueError("catalogue needs one title per id")

    def __len__(self) -> int:
        return len(self.ids)

    def index_map(self) -> dict[int, int]:
        return {item_id: index for index, item_id in enumerate(self.ids)}


@dataclass
class KnowledgeGraph:
    """Directed triples as stored by the dataset; `item_entities[i]` is catalogue item i's entity."""

    num_entities: int
    relation_names: list[str]
    heads: list[int]
    relations: list[int]
    tails: list[int]
    item_entities: list[int]
    entity_names: list[str] | None = None
    self_loop_relation: int | None = None

    @property
    def num_relations(self) -> int:
        return len(self.relation_names)

    def __len__(self) -> int:
        return len(self.heads)

    def edge_index(self, undirected: bool = True, self_loops: bool = True):
        """(edge_index [2, E], edge_type [E]) as torch tensors, the form torch-geometric layers take.

        `undirected` adds the reverse of every edge with the same relation id (PROTOCOL.md §1.2).
        """
        import torch

        heads = torch.tensor(self.heads, dtype=torch.long)
        tails = torch.tensor(self.tails, dtype=torch.long)
        types = torch.tensor(self.relations, dtype=torch.long)
        if not self_loops and self.self_loop_relation is not None:
            keep = types != self.self_loop_relation
            heads, tails, types = heads[keep], tails[keep], types[keep]
        if undirected:
            heads, tails, types = torch.cat([heads, tails]), torch.cat([tails, heads]), torch.cat([types, types])
        return torch.stack([heads, tails]), types

    def neighbours(self) -> list[set[int]]:
        """1-hop neighbour sets of every entity, both directions, self-loops ignored (ILD features)."""
        result: list[set[int]] = [set() for _ in range(self.num_entities)]
        for head, tail in zip(self.heads, self.tails):
            if head != tail:
                result[head].add(tail)
                result[tail].add(head)
        return result


@dataclass(frozen=True)
class RecSample:
    """One recommendation sample: context (dialogue, turn) and one label item index."""

    uid: str
    dialogue_index: int  # position of the dialogue in its split
    turn: int  # the recommender turn t; the context is turns 0..t-1
    label: int
    context_items: tuple[int, ...]  # M(c) ordered by last mention, most recent first
    context_entities: tuple[int, ...]  # entity ids, de-duplicated at first mention
    is_novel: bool  # label not mentioned earlier in the dialogue
    context_id: int  # index of the distinct context (dialogue, turn) within the split


@dataclass(frozen=True)
class ConvSample:
    uid: str
    dialogue_index: int
    turn: int
    reference: str  # masked text of the recommender turn


@dataclass
class Split:
    name: str
    dialogues: list[Dialogue]
    rec_samples: list[RecSample] = field(default_factory=list)
    conv_samples: list[ConvSample] = field(default_factory=list)
    source: str = ""  # the file the split was read from, so that errors about the split can name it

    def context(self, sample: RecSample | ConvSample) -> list[Turn]:
        return self.dialogues[sample.dialogue_index].turns[: sample.turn]

    def rec_samples_for(self, setting: str) -> list[RecSample]:
        if setting == "standard":
            return list(self.rec_samples)
        if setting == "novel":
            return [sample for sample in self.rec_samples if sample.is_novel]
        raise ValueError(f"unknown setting {setting!r}; expected one of {SETTINGS}")


@dataclass
class Dataset:
    """A loaded dataset: catalogue, optional knowledge graph and the three splits."""

    name: str
    catalogue: Catalogue
    splits: dict[str, Split]
    kg: KnowledgeGraph | None = None
    fingerprint: str = ""
    dedup_turn_labels: bool = False  # ReDial: distinct labels per turn; INSPIRED keeps duplicates
    info: dict[str, Any] = field(default_factory=dict)  # provenance: files, hashes, valid ids, notes

    @property
    def num_items(self) -> int:
        return len(self.catalogue)

    def build_samples(self) -> None:
        """(Re)build every split's samples from its dialogues with the protocol rules."""
        for split in self.splits.values():
            split.rec_samples, split.conv_samples = build_samples(
                split.name, split.dialogues, self.dedup_turn_labels
            )


def check_dataset(dataset: Dataset, list_length: int) -> None:
    """Refuse, at load time, a dataset that would give an empty or meaningless run: an empty split trains on
    nothing or scores nothing (null metrics, exit 0), and a catalogue too small for the ranked lists fails
    deep in evaluation. `list_length` 0 skips the catalogue checks."""
    missing = [name for name in SPLITS if name not in dataset.splits]
    if missing:
        raise DataError(f"dataset '{dataset.name}'", None, None, f"has no {' or '.join(missing)} split")
    for split in dataset.splits.values():
        _check_split(dataset.name, split)
    if list_length:
        _check_catalogue(dataset, list_length)


def _check_split(dataset_name: str, split: Split) -> None:
    where = split.source or f"dataset '{dataset_name}'"
    if not split.dialogues:
        raise DataError(where, None, None, f"{split.name} split has no dialogues")
    if not split.rec_samples:
        count = f"{len(split.dialogues)} dialogue" + ("s" if len(split.dialogues) != 1 else "")
        raise DataError(where, None, None, f"{split.name} split has no recommendation samples ({count}; no "
                                           "recommender turn after the first mentions a catalogue item)")


def _check_catalogue(dataset: Dataset, list_length: int) -> None:
    """Every list holds `list_length` candidates: the whole catalogue in `standard`, the catalogue minus the
    context's items in `novel` (valid and test are ranked in both settings)."""
    where = f"dataset '{dataset.name}'"
    if dataset.num_items < list_length:
        raise DataError(where, None, None, f"catalogue has {dataset.num_items} items, fewer than the "
                                           f"{list_length} of a ranked list")
    for name in ("valid", "test"):
        split = dataset.splits.get(name)
        widest = max((len(s.context_items) for s in split.rec_samples), default=0) if split else 0
        if dataset.num_items - widest < list_length:
            raise DataError(where, None, None, f"catalogue has {dataset.num_items} items and a {name} context "
                                               f"mentions {widest} of them: fewer than {list_length} candidates "
                                               "are left for its novel list")


def merge_turns(messages: Iterable[Turn]) -> list[Turn]:
    """Merge consecutive messages of the same role (texts joined by a space, mentions concatenated)."""
    merged: list[Turn] = []
    for message in messages:
        if message.role not in ROLES:
            raise ValueError(f"unknown role {message.role!r}")
        if merged and merged[-1].role == message.role:
            last = merged[-1]
            merged[-1] = Turn(
                role=last.role,
                text=_join(last.text, message.text),
                items=last.items + message.items,
                entities=last.entities + message.entities,
                masked_text=_join(last.masked_text, message.masked_text),
            )
        else:
            merged.append(message)
    return merged


def _join(left: str, right: str) -> str:
    return f"{left} {right}" if left and right else left or right


def _ordered_unique(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(values))


def build_samples(
    split_name: str, dialogues: Sequence[Dialogue], dedup_turn_labels: bool
) -> tuple[list[RecSample], list[ConvSample]]:
    """PROTOCOL.md §1.4 and §1.5: samples from every recommender turn t >= 1."""
    rec: list[RecSample] = []
    conv: list[ConvSample] = []
    context_id = 0
    for d_index, dialogue in enumerate(dialogues):
        last_mention: dict[int, tuple[int, int]] = {}
        entities: dict[int, None] = {}
        for t, turn in enumerate(dialogue.turns):
            if turn.role == RECOMMENDER and t >= 1:
                conv.append(ConvSample(f"{split_name}/{dialogue.id}/{t}", d_index, t, turn.masked_text))
                labels = _ordered_unique(turn.items) if dedup_turn_labels else turn.items
                if labels:
                    context_items = tuple(sorted(last_mention, key=last_mention.__getitem__, reverse=True))
                    mentioned = set(context_items)
                    context_entities = tuple(entities)
                    for j, label in enumerate(labels):
                        rec.append(
                            RecSample(
                                uid=f"{split_name}/{dialogue.id}/{t}/{j}",
                                dialogue_index=d_index,
                                turn=t,
                                label=label,
                                context_items=context_items,
                                context_entities=context_entities,
                                is_novel=label not in mentioned,
                                context_id=context_id,
                            )
                        )
                    context_id += 1
            for position, item in enumerate(turn.items):
                last_mention[item] = (t, position)
            for entity in turn.entities:
                entities.setdefault(entity, None)
    return rec, conv


def context_samples(split: Split, samples: Sequence[ConvSample]) -> list[RecSample]:
    """A context-only `RecSample` per conversation sample (label -1, one context id each), built with
    the rules of `build_samples`, so any recommender can rank the context a response answers, also at
    turns that mention no item."""
    wanted: dict[int, dict[int, int]] = {}
    for position, sample in enumerate(samples):
        wanted.setdefault(sample.dialogue_index, {})[sample.turn] = position
    out: list[RecSample | None] = [None] * len(samples)
    for d_index, turns in wanted.items():
        last_mention: dict[int, tuple[int, int]] = {}
        entities: dict[int, None] = {}
        for t, turn in enumerate(split.dialogues[d_index].turns):
            if t in turns:
                position = turns[t]
                out[position] = RecSample(
                    uid=samples[position].uid, dialogue_index=d_index, turn=t, label=-1,
                    context_items=tuple(sorted(last_mention, key=last_mention.__getitem__, reverse=True)),
                    context_entities=tuple(entities), is_novel=False, context_id=position)
            for index, item in enumerate(turn.items):
                last_mention[item] = (t, index)
            for entity in turn.entities:
                entities.setdefault(entity, None)
    return [sample for sample in out if sample is not None]
