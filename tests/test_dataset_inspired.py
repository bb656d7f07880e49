"""INSPIRED loader: protocol counts on the real files (PROTOCOL.md §1.7, Appendix A), hand-checked
samples, the masking rule, malformed input and plain/.gz equivalence on tiny files."""
from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from harness.data import RECOMMENDER, SEEKER, DataError
from harness.popularity import compute_statistics
from plugins.datasets.inspired import build_inspired, input_files, iri_label, mask_names

DATA = Path(os.environ.get("CRS_BENCH_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="module")
def inspired():
    if not (DATA / "inspired").is_dir():
        pytest.skip(f"INSPIRED data not found under {DATA} (set CRS_BENCH_DATA)")
    return build_inspired(DATA)


# --- real files -------------------------------------------------------------------------------


EXPECTED = {  # PROTOCOL.md §1.7
    "train": dict(dialogues=801, turns=16982, conv=7806, std_ctx=1798, std=2094, nov_ctx=1551, nov=1741, labels=968),
    "valid": dict(dialogues=99, turns=2053, conv=940, std_ctx=245, std=273, nov_ctx=196, nov=213, labels=184),
    "test": dict(dialogues=99, turns=2089, conv=960, std_ctx=227, std=256, nov_ctx=191, nov=214, labels=180),
}


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_reference_counts(inspired, split):
    s = inspired.splits[split]
    expected = EXPECTED[split]
    novel = s.rec_samples_for("novel")
    assert len(s.dialogues) == expected["dialogues"]
    assert sum(len(d.turns) for d in s.dialogues) == expected["turns"]
    assert len(s.conv_samples) == expected["conv"]
    assert len({x.context_id for x in s.rec_samples}) == expected["std_ctx"]
    assert len(s.rec_samples) == expected["std"]
    assert len({x.context_id for x in novel}) == expected["nov_ctx"]
    assert len(novel) == expected["nov"]
    assert len({x.label for x in s.rec_samples}) == expected["labels"]


def test_duplicate_labels_kept(inspired):
    # PROTOCOL.md §1.4: 29 / 2 / 4 duplicate samples in train / valid / test
    duplicates = {name: len(s.rec_samples) - len({(x.context_id, x.label) for x in s.rec_samples})
                  for name, s in inspired.splits.items()}
    assert duplicates == {"train": 29, "valid": 2, "test": 4}
    assert inspired.dedup_turn_labels is False


def test_catalogue_and_kg(inspired):
    assert inspired.num_items == 1472
    assert list(inspired.catalogue.ids) == sorted(inspired.catalogue.ids)
    kg = inspired.kg
    assert kg.num_entities == 17320
    assert kg.num_relations == 13 and kg.relation_names[12] == "self_loop" and kg.self_loop_relation == 12
    assert len(kg) == 38903  # edges of dbpedia_subkg.json as shipped, self-loops included
    assert kg.item_entities == list(inspired.catalogue.ids)
    # 95 items without neighbours (PROTOCOL.md §4.5)
    neighbours = kg.neighbours()
    assert sum(1 for e in kg.item_entities if not neighbours[e]) == 95


def test_tiers_appendix_a(inspired):
    train = inspired.splits["train"]
    stats = compute_statistics(inspired.num_items, train.dialogues, train.rec_samples)
    assert stats.tier_sizes() == {"head": 82, "body": 335, "tail": 1055, "cold": 199}
    tiers, cold = stats.tiers, stats.cold

    def per_tier(samples):
        counts = Counter(tiers[s.label] for s in samples)
        return counts["head"], counts["body"], counts["tail"], sum(cold[s.label] for s in samples)

    assert per_tier(inspired.splits["valid"].rec_samples) == (109, 57, 107, 79)
    assert per_tier(inspired.splits["test"].rec_samples) == (101, 51, 104, 72)
    assert per_tier(inspired.splits["test"].rec_samples_for("novel")) == (77, 43, 94, 64)


def test_spot_check_train_first_sample(inspired):
    """train line 1: turn 2 (RECOMMENDER) mentions Knives Out after two turns without movies."""
    train = inspired.splits["train"]
    sample = train.rec_samples[0]
    assert sample.uid == "train/0/2/0" and sample.turn == 2
    assert len(train.context(sample)) == 2
    assert inspired.catalogue.titles[sample.label] == "Knives Out"
    assert sample.context_items == () and sample.is_novel
    names = inspired.kg.entity_names
    assert [names[e] for e in sample.context_entities] == ["Action film", "Mystery fiction"]
    turn = train.dialogues[0].turns[2]
    assert turn.role == RECOMMENDER
    # only the turn's movie_name ("Knives Out") is masked; "Joker" is a movie_name of turn 3, not here
    assert turn.masked_text.startswith("I just saw the trailer for <movie> when I went to see Joker")
    assert [names[e] for e in turn.entities] == ["Remix", "Action film", "Knives Out"]


def test_spot_check_test_first_sample(inspired):
    """test line 1: turn 4 asks about Hustlers, which the seeker named at turn 3: not novel."""
    test = inspired.splits["test"]
    sample = test.rec_samples[0]
    assert sample.uid == "test/0/4/0"
    context = test.context(sample)
    assert len(context) == 4 and [t.role for t in context] == [RECOMMENDER, SEEKER, RECOMMENDER, SEEKER]
    assert inspired.catalogue.titles[sample.label] == "Hustlers (film)"
    assert sample.context_items == (sample.label,) and not sample.is_novel
    names = inspired.kg.entity_names
    assert [names[e] for e in sample.context_entities] == [
        "Film", "Theatre", "Comedy", "Drama", "Documentary film", "Hustlers (film)"]
    assert test.conv_samples[0].reference == "What are some genres you like? What was the last movie you saw?"


def test_info_provenance(inspired):
    info = inspired.info
    assert info["num_train_dialogues"] == 801
    assert set(info["files"]) == {p.name for p in input_files(DATA)}
    # relative to the data directory: committed records carry no machine-specific absolute path
    assert {entry["path"] for entry in info["files"].values()} == {f"inspired/{p.name}" for p in input_files(DATA)}
    assert info["train_file_sha256"] == "f185878d61f4cf95036711612befbec2e587b42fcb7bf855fba3af08016e7743"
    assert info["partial_train"] is False


# --- rules on tiny inputs ---------------------------------------------------------------------


def test_mask_names_first_case_insensitive_occurrence():
    assert mask_names("I like KNIVES out and Knives Out", ["Knives Out"]) == "I like <movie> and Knives Out"
    assert mask_names("Joker, Joker", ["Joker", "Joker"]) == "<movie>, <movie>"
    assert mask_names("no match here", ["Heat", ""]) == "no match here"


def test_iri_label():
    assert iri_label("<http://dbpedia.org/resource/Joker_(2019_film)>") == "Joker (2019 film)"
    assert iri_label("<http://dbpedia.org/resource/Am%C3%A9lie>") == "Amélie"


R = "<http://dbpedia.org/resource/{}>".format
ENTITY2ID = {R("A_(film)"): 0, R("B"): 1, R("Action_film"): 2, R("C"): 3, R("Not_a_movie"): 4}


def turn(role, text, movies=(), entities=()):
    return {"text": text, "role": role, "movie": [], "movie_link": [R(m) for m in movies],
            "movie_name": [m.split("_")[0] for m in movies], "entity_link": [R(e) for e in entities],
            "entity_name": list(entities)}


TRAIN = [
    [turn("SEEKER", "I like action films  like A", ["A_(film)"], ["Action_film"]),
     turn("RECOMMENDER", "Try B", ["B"]),
     turn("RECOMMENDER", "or A again", ["A_(film)", "Unknown_film"]),  # unknown IRI: not a mention
     turn("SEEKER", "thanks")],
]
OTHER = [[turn("RECOMMENDER", "hi"), turn("SEEKER", "C please", ["C"]), turn("RECOMMENDER", "C then", ["C"])]]


def write_tiny(directory: Path, gz: bool = False, train=TRAIN, overrides: dict[str, str] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    texts = {
        "entity2id.json": json.dumps(ENTITY2ID),
        "item_ids.json": json.dumps([3, 0, 1]),
        "relation2id.json": json.dumps({"genre": 0, "self_loop": 1}),
        "dbpedia_subkg.json": json.dumps({"0": [[1, 0], [0, 2]], "1": [[1, 1], [0, 2]]}),
        "train_data_dbpedia.jsonl": "".join(json.dumps(d) + "\n" for d in train),
        "valid_data_dbpedia.jsonl": "".join(json.dumps(d) + "\n" for d in OTHER),
        "test_data_dbpedia.jsonl": "".join(json.dumps(d) + "\n" for d in OTHER),
    }
    texts.update(overrides or {})
    for name, text in texts.items():
        if gz:
            with gzip.open(directory / f"{name}.gz", "wt", encoding="utf-8") as out:
                out.write(text)
        else:
            (directory / name).write_text(text, encoding="utf-8")
    return directory


def test_tiny_dataset_hand_computed(tmp_path):
    ds = build_inspired(write_tiny(tmp_path / "inspired"))
    assert ds.catalogue.ids == (0, 1, 3) and ds.catalogue.titles == ("A (film)", "B", "C")
    train = ds.splits["train"]
    turns = train.dialogues[0].turns
    assert [t.role for t in turns] == [SEEKER, RECOMMENDER, SEEKER]  # two recommender messages merged
    assert turns[0].text == "I like action films like A"  # whitespace collapsed
    assert turns[1].text == "Try B or A again" and turns[1].items == (1, 0)
    assert turns[1].masked_text == "Try <movie> or <movie> again"
    assert turns[0].entities == (2, 0)  # entity_link ids, then movie_link ids
    assert [(s.label, s.context_items, s.is_novel) for s in train.rec_samples] == [(1, (0,), True), (0, (0,), False)]
    assert train.rec_samples[0].context_entities == (2, 0)
    assert len(train.conv_samples) == 1 and train.conv_samples[0].reference == "Try <movie> or <movie> again"
    test = ds.splits["test"]
    assert [(s.turn, s.label, s.is_novel) for s in test.rec_samples] == [(2, 2, False)]
    assert len(test.conv_samples) == 1  # turn 0 is a recommender turn but t = 0 gives no sample
    assert len(ds.kg) == 4 and ds.kg.num_entities == 5


def test_plain_and_gz_are_equivalent(tmp_path):
    plain = build_inspired(write_tiny(tmp_path / "plain"))
    packed = build_inspired(write_tiny(tmp_path / "packed", gz=True))
    for name in ("train", "valid", "test"):
        assert plain.splits[name].dialogues == packed.splits[name].dialogues
        assert plain.splits[name].rec_samples == packed.splits[name].rec_samples
        assert plain.splits[name].conv_samples == packed.splits[name].conv_samples
    assert plain.catalogue == packed.catalogue
    assert plain.info["train_file_sha256"] == packed.info["train_file_sha256"]  # hash of the content


def test_data_dir_may_be_the_root(tmp_path):
    write_tiny(tmp_path / "inspired")
    assert build_inspired(tmp_path).splits["train"].rec_samples == build_inspired(tmp_path / "inspired").splits["train"].rec_samples


def test_truncated_json_line(tmp_path):
    line = json.dumps(TRAIN[0])
    directory = write_tiny(tmp_path, overrides={"train_data_dbpedia.jsonl": line + "\n" + line[:40] + "\n"})
    with pytest.raises(DataError) as error:
        build_inspired(directory)
    assert error.value.file.endswith("train_data_dbpedia.jsonl") and error.value.line == 2
    assert "train_data_dbpedia.jsonl:2" in str(error.value) and "truncated" in str(error.value)


def test_turn_without_role(tmp_path):
    broken = [[turn("SEEKER", "hi"), {"text": "no role here", "movie_link": []}]]
    with pytest.raises(DataError) as error:
        build_inspired(write_tiny(tmp_path, train=TRAIN + broken))
    assert error.value.line == 2 and error.value.field == "[1].role"
    assert "train_data_dbpedia.jsonl:2" in str(error.value) and "'[1].role'" in str(error.value)


def test_unknown_role(tmp_path):
    broken = [[turn("NARRATOR", "hi")]]
    with pytest.raises(DataError, match="unknown role 'NARRATOR'"):
        build_inspired(write_tiny(tmp_path, train=broken))


def test_movie_not_in_catalogue(tmp_path):
    broken = [[turn("SEEKER", "hi"), turn("RECOMMENDER", "see this", ["Not_a_movie"])]]
    with pytest.raises(DataError) as error:
        build_inspired(write_tiny(tmp_path, train=broken))
    assert error.value.line == 1 and error.value.field == "[1].movie_link"
    assert "Not_a_movie" in str(error.value) and "item_ids.json" in str(error.value)


def test_missing_file(tmp_path):
    directory = write_tiny(tmp_path)
    (directory / "valid_data_dbpedia.jsonl").unlink()
    with pytest.raises(DataError) as error:
        build_inspired(directory)
    assert "valid_data_dbpedia.jsonl" in str(error.value) and "missing" in str(error.value)


def test_bad_json_document_names_line(tmp_path):
    directory = write_tiny(tmp_path, overrides={"entity2id.json": '{\n "a": 1,\n'})
    with pytest.raises(DataError) as error:
        build_inspired(directory)
    assert error.value.file.endswith("entity2id.json") and error.value.line == 3


def test_rejects_unknown_params(tmp_path):
    with pytest.raises(ValueError, match="no parameters"):
        build_inspired(write_tiny(tmp_path), foo=1)


# --- bench data info ----------------------------------------------------------------------------


def test_data_info_describe_render_plot(inspired, tmp_path):
    from harness.data_info import describe, plot_popularity, render

    train = inspired.splits["train"]
    stats = compute_statistics(inspired.num_items, train.dialogues, train.rec_samples)
    info = describe(inspired, stats)
    assert info["items"] == 1472
    assert {n: s["rec_samples"]["standard"] for n, s in info["splits"].items()} == {"train": 2094, "valid": 273, "test": 256}
    assert info["splits"]["test"]["contexts"] == {"standard": 227, "novel": 191}
    assert info["splits"]["test"]["conversation_samples"] == 960
    assert info["splits"]["test"]["label_tiers"]["standard"] == {"head": 101, "body": 51, "tail": 104, "cold": 72}
    assert info["splits"]["valid"]["label_tiers"]["standard"] == {"head": 109, "body": 57, "tail": 107, "cold": 79}
    assert info["popularity"]["tier_sizes"] == {"head": 82, "body": 335, "tail": 1055, "cold": 199}
    assert info["kg"] == {"entities": 17320, "relations": 13, "triples": 38903, "items_without_neighbours": 95}
    json.dumps(info)  # JSON-ready
    text = render(info)
    assert "2,094" in text and "1,055" in text and "17,320 entities" in text
    png = tmp_path / "plots" / "pop.png"
    plot_popularity(stats, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
