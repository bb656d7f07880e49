"""ReDial (Li et al., NeurIPS 2018) in the official release format (PROTOCOL.md §1.1-1.6).

Catalogue: `movies_with_mentions.csv` (integer movieIds; `nbMentions` is ignored, it counts test
mentions too). Knowledge graph: built from `movie_metadata.json` with the harness rule of §1.2, or
None (with a note in `dataset.info`) when that file is absent. Splits: the official test file, and
valid/train carved from the (partial) training file by the recorded rule of §1.6. Text mentions of
genres and (multi-word) person names are linked to KG entities by exact token n-gram lookup.
"""
from __future__ import annotations

import csv
import random
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

from harness.api import hookimpl
from harness.data import (
    MOVIE_PLACEHOLDER, RECOMMENDER, SEEKER, Catalogue, DataError, Dataset, Dialogue, KnowledgeGraph, Split,
    Turn, merge_turns, reading,
)

from .common import (collapse_unescape, dataset_dir, file_provenance, find_file, iter_jsonl, open_text, read_json,
                     require)

NAME = "redial"
VERSION = "1"
REQUIRED_FILES = ("train_data.jsonl", "test_data.jsonl", "movies_with_mentions.csv")
METADATA_FILE = "movie_metadata.json"
RELATIONS = ("genre", "director", "writer", "star", "self_loop")
PERSON_FIELDS = ("director", "writer", "star")
VALID_SEED = 42
MENTION = re.compile(r"@(\d+)")
TOKEN = re.compile(r"[^\W_]+")
PARAMS = {"link_entities": True, "min_name_chars": 3}

VALID_RULE = ("sort the training-file conversations by int(conversationId), random.Random(42).shuffle, "
              "the first floor(N/10) are valid, the rest train (PROTOCOL.md §1.6); dialogues inside "
              "train and valid are then listed in ascending conversationId, test in file order")
LINKING_RULE = ("case-insensitive, whole-token match of KG entity names against the turn's masked text "
                "(movie titles excluded): names are lowercased sequences of letter/digit tokens; genres "
                "are linked when the name has >= {min_chars} characters, persons only when the name has "
                ">= 2 tokens (single-token names such as 'Common' or 'Journey' are ordinary words); at each "
                "position the longest name wins, ties go to the smallest entity id; Turn.entities = the "
                "linked entities in text order, then the turn's movies")


def input_files(data_dir: Path) -> list[Path]:
    """The files the loader reads: the three required ones and the metadata file when present."""
    directory = dataset_dir(data_dir, NAME)
    paths = [find_file(directory, name) for name in REQUIRED_FILES]
    metadata = find_file(directory, METADATA_FILE, required=False)
    return paths + ([metadata] if metadata else [])


# --- catalogue and knowledge graph ----------------------------------------------------------


def read_catalogue(path: Path) -> tuple[list[int], list[str]]:
    """(ascending movieIds, raw movieNames) of movies_with_mentions.csv."""
    names: dict[int, str] = {}
    with reading(path), open_text(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or header[:2] != ["movieId", "movieName"]:
            raise DataError(str(path), 1, None, f"expected header 'movieId,movieName,...', got {header!r}")
        for row in reader:
            if not row:
                continue
            line = reader.line_num
            if len(row) < 2:
                raise DataError(str(path), line, "movieName", "is missing")
            if not row[0].strip().isdigit():
                raise DataError(str(path), line, "movieId", f"expected an integer, got {row[0]!r}")
            movie = int(row[0])
            if movie in names:
                raise DataError(str(path), line, "movieId", f"duplicate movieId {movie}")
            names[movie] = row[1]
    ids = sorted(names)
    return ids, [names[movie] for movie in ids]


def _values(entry: Any, key: str, path: Path, field: str) -> list[str]:
    values = entry.get(key) or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise DataError(str(path), None, field, "expected a list of strings")
    return [v.strip() for v in values if v.strip()]


def build_kg(path: Path, movie_ids: list[int]) -> tuple[KnowledgeGraph, list[dict[str, Any]], dict[str, Any]]:
    """The metadata KG of PROTOCOL.md §1.2: movies (= catalogue indices), genres, persons; distinct triples."""
    metadata = read_json(path)
    if not isinstance(metadata, dict):
        raise DataError(str(path), None, None, "expected an object movieId -> metadata")
    index = {movie: i for i, movie in enumerate(movie_ids)}
    per_movie: dict[int, dict[str, list[str]]] = {}
    extra = 0
    for key, entry in metadata.items():
        if not key.strip().isdigit() or not isinstance(entry, dict):
            raise DataError(str(path), None, key, "expected movieId -> object")
        movie = int(key)
        if movie not in index:
            extra += 1
            continue
        per_movie[index[movie]] = {rel: _values(entry, rel, path, f"{key}.{rel}") for rel in RELATIONS[:4]}
    genres = sorted({g for values in per_movie.values() for g in values["genre"]})
    persons = sorted({p for values in per_movie.values() for rel in PERSON_FIELDS for p in values[rel]})
    n_movies = len(movie_ids)
    genre_id = {g: n_movies + i for i, g in enumerate(genres)}
    person_id = {p: n_movies + len(genres) + i for i, p in enumerate(persons)}
    triples = sorted({
        (movie, rel, genre_id[value] if rel == 0 else person_id[value])
        for movie, values in per_movie.items()
        for rel, name in enumerate(RELATIONS[:4])
        for value in values[name]
    })
    kg = KnowledgeGraph(
        num_entities=n_movies + len(genres) + len(persons),
        relation_names=list(RELATIONS),
        heads=[h for h, _, _ in triples],
        relations=[r for _, r, _ in triples],
        tails=[t for _, _, t in triples],
        item_entities=list(range(n_movies)),
        entity_names=[""] * n_movies + genres + persons,  # movie names are filled in by the caller
        self_loop_relation=RELATIONS.index("self_loop"),
    )
    item_metadata = []
    for i, movie in enumerate(movie_ids):
        entry = metadata.get(str(movie))
        item_metadata.append(dict(entry) if isinstance(entry, dict) else {})
    note = {"movies_with_metadata": len(per_movie), "movies_without_metadata": n_movies - len(per_movie),
            "metadata_entries_outside_catalogue": extra, "genres": len(genres), "persons": len(persons),
            "triples": len(triples)}
    return kg, item_metadata, note


class EntityLinker:
    """Longest-match lookup of lowercased token n-grams; one dict probe per token for non-starts."""

    def __init__(self, kg: KnowledgeGraph, n_movies: int, n_genres: int, min_name_chars: int):
        names: dict[tuple[str, ...], int] = {}
        for entity in range(n_movies, kg.num_entities):
            tokens = tuple(TOKEN.findall(kg.entity_names[entity].lower()))
            is_genre = entity < n_movies + n_genres
            if not tokens or len("".join(tokens)) < min_name_chars or (not is_genre and len(tokens) < 2):
                continue
            names.setdefault(tokens, entity)  # ascending ids: the smallest id wins a collision
        self.names = names
        self.lengths: dict[str, list[int]] = {}
        for tokens in names:
            self.lengths.setdefault(tokens[0], []).append(len(tokens))
        for lengths in self.lengths.values():
            lengths[:] = sorted(set(lengths), reverse=True)

    def link(self, text: str) -> list[int]:
        found: list[int] = []
        for segment in text.split(MOVIE_PLACEHOLDER):  # never match across a masked title
            tokens = TOKEN.findall(segment.lower())
            i = 0
            while i < len(tokens):
                step = 1
                for length in self.lengths.get(tokens[i], ()):
                    entity = self.names.get(tuple(tokens[i:i + length]))
                    if entity is not None:
                        found.append(entity)
                        step = length
                        break
                i += step
        return found


# --- conversations --------------------------------------------------------------------------


def read_conversations(path: Path, names: dict[int, str], index: dict[int, int]) -> list[Dialogue]:
    """Official jsonl: roles from worker ids, `@id` mentions resolved and rendered, turns merged."""
    dialogues: list[Dialogue] = []
    seen: set[str] = set()
    for line, record in iter_jsonl(path):
        conversation = require(record, "conversationId", (str, int), path, line, "conversationId")
        conversation = str(conversation)
        if not conversation.strip().isdigit():
            raise DataError(str(path), line, "conversationId", f"expected an integer id, got {conversation!r}")
        if conversation in seen:
            raise DataError(str(path), line, "conversationId", f"duplicate conversation {conversation}")
        seen.add(conversation)
        recommender = require(record, "respondentWorkerId", (int, str), path, line, "respondentWorkerId")
        messages = require(record, "messages", list, path, line, "messages")
        turns: list[Turn] = []
        for j, message in enumerate(messages):
            where = f"messages[{j}]"
            sender = require(message, "senderWorkerId", (int, str), path, line, f"{where}.senderWorkerId")
            text = require(message, "text", str, path, line, f"{where}.text")
            items = []
            for match in MENTION.finditer(text):
                movie = int(match.group(1))
                if movie not in index:
                    raise DataError(str(path), line, f"{where}.text",
                                    f"unknown movie id @{movie} (not in movies_with_mentions.csv)")
                items.append(index[movie])
            rendered = MENTION.sub(lambda m: names[int(m.group(1))], text)
            masked = MENTION.sub(MOVIE_PLACEHOLDER, text)
            role = RECOMMENDER if sender == recommender else SEEKER
            turns.append(Turn(role, collapse_unescape(rendered), tuple(items), (), collapse_unescape(masked)))
        dialogues.append(Dialogue(id=conversation, turns=merge_turns(turns), meta={"line": line}))
    return dialogues


def with_entities(dialogues: Iterable[Dialogue], linker: EntityLinker | None) -> None:
    """Turn.entities = linked non-movie entities, then the turn's movies (movie entity id = item index)."""
    for dialogue in dialogues:
        dialogue.turns = [
            replace(turn, entities=tuple(linker.link(turn.masked_text) if linker else ()) + turn.items)
            for turn in dialogue.turns
        ]


def split_train_valid(dialogues: list[Dialogue]) -> tuple[list[Dialogue], list[Dialogue]]:
    """PROTOCOL.md §1.6: sorted by integer id, Random(42).shuffle, first floor(N/10) valid."""
    ordered = sorted(dialogues, key=lambda d: int(d.id))
    shuffled = list(ordered)
    random.Random(VALID_SEED).shuffle(shuffled)
    valid_ids = {d.id for d in shuffled[: len(shuffled) // 10]}
    return [d for d in ordered if d.id not in valid_ids], [d for d in ordered if d.id in valid_ids]


def build_redial(data_dir: Path, **params: Any) -> Dataset:
    """Load ReDial from `data_dir` (or `data_dir/redial`) and build the protocol samples.

    Params: `link_entities` (default True; False gives movies-only entities) and `min_name_chars`
    (default 3; shorter genre names are not linked).
    """
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise ValueError(f"dataset 'redial': unknown parameter(s) {unknown}; known: {sorted(PARAMS)}")
    options = {**PARAMS, **params}
    directory = dataset_dir(Path(data_dir), NAME)
    paths = input_files(directory)
    train_path, test_path, catalogue_path = paths[:3]
    metadata_path = paths[3] if len(paths) > 3 else None

    movie_ids, raw_names = read_catalogue(catalogue_path)
    index = {movie: i for i, movie in enumerate(movie_ids)}
    names = dict(zip(movie_ids, raw_names))
    titles = tuple(collapse_unescape(name) for name in raw_names)

    info: dict[str, Any] = {}
    kg: KnowledgeGraph | None = None
    linker: EntityLinker | None = None
    item_metadata = None
    if metadata_path is not None:
        kg, item_metadata, info["kg"] = build_kg(metadata_path, movie_ids)
        kg.entity_names[: len(movie_ids)] = list(titles)
        if options["link_entities"]:
            linker = EntityLinker(kg, len(movie_ids), info["kg"]["genres"], int(options["min_name_chars"]))
    else:
        info["kg"] = f"{METADATA_FILE} not found: no knowledge graph; entities are the movies only"

    test = read_conversations(test_path, names, index)
    train_all = read_conversations(train_path, names, index)
    train, valid = split_train_valid(train_all)
    for dialogues in (train, valid, test):
        with_entities(dialogues, linker)

    files, hashes = file_provenance(paths)
    info.update({
        "source": "official ReDial release (ReDialData/website, data branch, redial_dataset.zip)",
        "files": files,
        "sha256_of": "decompressed content (a file and its .gz copy hash alike)",
        "train_file_sha256": hashes["train_data.jsonl"],
        "num_train_file_conversations": len(train_all),
        "num_train_dialogues": len(train),
        "valid_rule": VALID_RULE,
        "valid_seed": VALID_SEED,
        "valid_conversation_ids": [d.id for d in valid],
        "partial_train": True,
        "partial_train_note": (f"train_data.jsonl holds {len(train_all)} of the official 10,006 training "
                               "conversations: results are not comparable with published ReDial numbers"),
        "labels": "distinct movies of the turn in order of first occurrence (PROTOCOL.md §1.4)",
        "entity_linking": (LINKING_RULE.format(min_chars=options["min_name_chars"]) if linker
                           else "disabled: Turn.entities are the turn's movies only"),
        "params": options,
    })
    dataset = Dataset(
        name=NAME,
        catalogue=Catalogue(tuple(movie_ids), titles, tuple(item_metadata) if item_metadata else None),
        splits={"train": Split("train", train, source=str(train_path)),
                "valid": Split("valid", valid, source=str(train_path)),  # carved from the training file
                "test": Split("test", test, source=str(test_path))},
        kg=kg,
        dedup_turn_labels=True,
        info=info,
    )
    dataset.build_samples()
    return dataset


@hookimpl
def crs_bench_register_datasets(registry) -> None:
    registry.add(NAME, build_redial, "ReDial movie dialogues, official format (partial train, metadata KG).",
                 version=VERSION, input_files=input_files)
