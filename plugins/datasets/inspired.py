"""INSPIRED (Hayati et al., EMNLP 2020) in the DBpedia-linked format of UniCRS (PROTOCOL.md §1.1-1.6).

The catalogue is `item_ids.json` (entity ids), the knowledge graph is `dbpedia_subkg.json` as
shipped, the splits are the shipped 801 / 99 / 99 files and a dialogue's id is its 0-based line
number in its split file. Every file may also be given gzipped (`name.gz`).
"""
from __future__ import annotations

import re
import urllib.parse
from pathlib import Path
from typing import Any

from harness.api import hookimpl
from harness.data import (
    RECOMMENDER, SEEKER, SPLITS, Catalogue, DataError, Dataset, Dialogue, KnowledgeGraph, Split, Turn,
    merge_turns,
)

from .common import collapse, dataset_dir, file_provenance, find_file, iter_jsonl, read_json, require

NAME = "inspired"
VERSION = "1"
SPLIT_FILES = {split: f"{split}_data_dbpedia.jsonl" for split in SPLITS}
KG_FILES = ("entity2id.json", "dbpedia_subkg.json", "relation2id.json", "item_ids.json")
FILES = (*SPLIT_FILES.values(), *KG_FILES)
ROLE_MAP = {"SEEKER": SEEKER, "RECOMMENDER": RECOMMENDER}
MOVIE = "<movie>"
_IRI_PREFIX = "<http://dbpedia.org/resource/"


def input_files(data_dir: Path) -> list[Path]:
    """Every file the loader reads (plain or .gz); DataError naming the first missing one."""
    directory = dataset_dir(data_dir, NAME)
    return [find_file(directory, name) for name in FILES]


def iri_label(iri: str) -> str:
    """Readable name of a DBpedia IRI: `<http://dbpedia.org/resource/Joker_(2019_film)>` -> `Joker (2019 film)`."""
    core = iri[len(_IRI_PREFIX):-1] if iri.startswith(_IRI_PREFIX) and iri.endswith(">") else iri.strip("<>")
    return urllib.parse.unquote(core).replace("_", " ")


def mask_names(text: str, names: list[str]) -> str:
    """UniCRS INSPIRED masking: each name, in order, replaces its first case-insensitive occurrence."""
    for name in names:
        if not name:
            continue
        text = re.sub(re.escape(name), MOVIE, text, count=1, flags=re.IGNORECASE)
    return text


def _string_list(turn: dict, key: str, path: Path, line: int, field: str) -> list[str]:
    values = turn.get(key, [])
    if values is None:
        return []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise DataError(str(path), line, field, "expected a list of strings")
    return values


def read_split(path: Path, entity2id: dict[str, int], item_index: dict[int, int]) -> list[Dialogue]:
    """One dialogue per line: a JSON list of turns; roles mapped, mentions resolved, turns merged."""
    dialogues: list[Dialogue] = []
    for position, (line, record) in enumerate(iter_jsonl(path)):
        if not isinstance(record, list):
            raise DataError(str(path), line, None, f"expected a JSON list of turns, got {type(record).__name__}")
        messages: list[Turn] = []
        for i, turn in enumerate(record):
            where = f"[{i}]"
            role_name = require(turn, "role", str, path, line, f"{where}.role")
            role = ROLE_MAP.get(role_name)
            if role is None:
                raise DataError(str(path), line, f"{where}.role", f"unknown role {role_name!r}; expected SEEKER or RECOMMENDER")
            text = collapse(require(turn, "text", str, path, line, f"{where}.text"))
            movie_links = _string_list(turn, "movie_link", path, line, f"{where}.movie_link")
            movie_names = _string_list(turn, "movie_name", path, line, f"{where}.movie_name")
            entity_links = _string_list(turn, "entity_link", path, line, f"{where}.entity_link")
            items: list[int] = []
            movie_entities: list[int] = []
            for link in movie_links:
                entity = entity2id.get(link)
                if entity is None:  # PROTOCOL §1.3: only links found in entity2id are mentions
                    continue
                index = item_index.get(entity)
                if index is None:
                    raise DataError(str(path), line, f"{where}.movie_link",
                                    f"unknown movie id {link} (entity {entity}) is not in item_ids.json")
                items.append(index)
                movie_entities.append(entity)
            entities = [entity2id[link] for link in entity_links if link in entity2id] + movie_entities
            messages.append(Turn(role, text, tuple(items), tuple(entities), mask_names(text, movie_names)))
        dialogues.append(Dialogue(id=str(position), turns=merge_turns(messages), meta={"line": line}))
    return dialogues


def read_kg(directory: Path) -> tuple[dict[str, int], KnowledgeGraph, list[int]]:
    """entity2id, the shipped sub-KG and the movie entity ids (item_ids.json), validated."""
    e2i_path = find_file(directory, "entity2id.json")
    entity2id = read_json(e2i_path)
    if not isinstance(entity2id, dict) or not all(isinstance(v, int) for v in entity2id.values()):
        raise DataError(str(e2i_path), None, None, "expected an object mapping IRIs to integer ids")
    num_entities = max(entity2id.values(), default=-1) + 1
    names = [""] * num_entities
    for iri, entity in entity2id.items():
        names[entity] = iri_label(iri)

    rel_path = find_file(directory, "relation2id.json")
    relation2id = read_json(rel_path)
    if not isinstance(relation2id, dict) or sorted(relation2id.values()) != list(range(len(relation2id))):
        raise DataError(str(rel_path), None, None, "expected an object mapping relation names to ids 0..R-1")
    relation_names = [""] * len(relation2id)
    for relation, rid in relation2id.items():
        relation_names[rid] = relation

    kg_path = find_file(directory, "dbpedia_subkg.json")
    subkg = read_json(kg_path)
    if not isinstance(subkg, dict):
        raise DataError(str(kg_path), None, None, "expected an object head id -> [[relation, tail], ...]")
    heads: list[int] = []
    relations: list[int] = []
    tails: list[int] = []
    for head_key, edges in subkg.items():
        if not head_key.isdigit() or int(head_key) >= num_entities or not isinstance(edges, list):
            raise DataError(str(kg_path), None, head_key, "head must be an entity id with a list of edges")
        head = int(head_key)
        for edge in edges:
            if (not isinstance(edge, list) or len(edge) != 2 or not all(isinstance(x, int) for x in edge)
                    or not 0 <= edge[0] < len(relation_names) or not 0 <= edge[1] < num_entities):
                raise DataError(str(kg_path), None, head_key, f"bad edge {edge!r}: expected [relation id, tail id]")
            heads.append(head)
            relations.append(edge[0])
            tails.append(edge[1])

    items_path = find_file(directory, "item_ids.json")
    item_ids = read_json(items_path)
    if not isinstance(item_ids, list) or not all(isinstance(x, int) and 0 <= x < num_entities for x in item_ids):
        raise DataError(str(items_path), None, None, "expected a list of entity ids")
    catalogue_ids = sorted(set(item_ids))
    kg = KnowledgeGraph(
        num_entities=num_entities,
        relation_names=relation_names,
        heads=heads,
        relations=relations,
        tails=tails,
        item_entities=catalogue_ids,
        entity_names=names,
        self_loop_relation=relation2id.get("self_loop"),
    )
    return entity2id, kg, catalogue_ids


def build_inspired(data_dir: Path, **params: Any) -> Dataset:
    """Load INSPIRED from `data_dir` (or `data_dir/inspired`) and build the protocol samples."""
    if params:
        raise ValueError(f"dataset 'inspired' takes no parameters, got {sorted(params)}")
    directory = dataset_dir(Path(data_dir), NAME)
    paths = input_files(directory)
    entity2id, kg, catalogue_ids = read_kg(directory)
    iris = {entity: iri for iri, entity in entity2id.items()}
    catalogue = Catalogue(
        ids=tuple(catalogue_ids),
        titles=tuple(kg.entity_names[entity] for entity in catalogue_ids),
        metadata=tuple({"iri": iris.get(entity, "")} for entity in catalogue_ids),
    )
    item_index = catalogue.index_map()
    splits = {}
    for split, file in SPLIT_FILES.items():
        path = find_file(directory, file)
        splits[split] = Split(split, read_split(path, entity2id, item_index), source=str(path))
    files, hashes = file_provenance(paths)
    dataset = Dataset(
        name=NAME,
        catalogue=catalogue,
        splits=splits,
        kg=kg,
        dedup_turn_labels=False,
        info={
            "source": "UniCRS DBpedia-linked INSPIRED (wxl1999/UniCRS data/inspired, processed)",
            "files": files,
            "sha256_of": "decompressed content (a file and its .gz copy hash alike)",
            "train_file_sha256": hashes[SPLIT_FILES["train"]],
            "num_train_dialogues": len(splits["train"].dialogues),
            "dialogue_id_rule": "0-based line number within the split file",
            "labels": "movie_link mentions of the turn, duplicates kept (PROTOCOL.md §1.4)",
            "partial_train": False,
        },
    )
    dataset.build_samples()
    return dataset


@hookimpl
def crs_bench_register_datasets(registry) -> None:
    registry.add(NAME, build_inspired, "INSPIRED movie dialogues, UniCRS DBpedia format (801/99/99).",
                 version=VERSION, input_files=input_files)
