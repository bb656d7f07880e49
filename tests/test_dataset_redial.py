"""ReDial loader: protocol counts on the real files (PROTOCOL.md §1.2, §1.6, §1.7), hand-checked
samples, the metadata KG rule, entity linking, the valid-split rule, malformed input and .gz."""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
from pathlib import Path

import pytest

from harness.data import RECOMMENDER, SEEKER, DataError
from plugins.datasets.redial import build_redial

DATA = Path(os.environ.get("CRS_BENCH_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="module")
def redial():
    if not (DATA / "redial").is_dir():
        pytest.skip(f"ReDial data not found under {DATA} (set CRS_BENCH_DATA)")
    return build_redial(DATA)


# --- real files -------------------------------------------------------------------------------


def test_test_split_reference_counts(redial):
    test = redial.splits["test"]
    novel = test.rec_samples_for("novel")
    assert len(test.dialogues) == 1342
    assert sum(len(d.turns) for d in test.dialogues) == 15704
    assert len(test.conv_samples) == 7087
    assert len(test.rec_samples) == 4897 and len({s.context_id for s in test.rec_samples}) == 3617
    assert len(novel) == 4426 and len({s.context_id for s in novel}) == 3372
    assert len({s.label for s in test.rec_samples}) == 1624
    assert redial.dedup_turn_labels is True


def test_partial_train_and_valid_split(redial):
    train, valid = redial.splits["train"], redial.splits["valid"]
    assert len(valid.dialogues) == 227 and len(train.dialogues) == 2043
    info = redial.info
    assert info["partial_train"] is True and info["num_train_dialogues"] == 2043
    assert info["num_train_file_conversations"] == 2270
    assert info["valid_conversation_ids"] == [d.id for d in valid.dialogues]
    assert not {d.id for d in valid.dialogues} & {d.id for d in train.dialogues}
    assert info["train_file_sha256"] == "0e59a1fbb26f2253d4dcbabe8f7eb0b71ef3896bd9383d84a8ce902551fc246d"
    # the recorded rule, applied independently to the ids of the training file
    ids = sorted((int(d.id) for d in train.dialogues + valid.dialogues))
    random.Random(42).shuffle(ids)
    assert sorted(int(i) for i in info["valid_conversation_ids"]) == sorted(ids[:227])


def test_metadata_kg(redial):
    kg = redial.kg
    assert kg.num_entities == 24977 and len(kg) == 56195
    assert kg.relation_names == ["genre", "director", "writer", "star", "self_loop"]
    assert kg.item_entities == list(range(6924))
    assert kg.entity_names[6924] == "action" and kg.entity_names[6924 + 26] == "western"
    assert len(set(zip(kg.heads, kg.relations, kg.tails))) == 56195
    assert max(kg.heads) < 6924 and min(kg.tails) >= 6924  # movie -> value edges only
    neighbours = kg.neighbours()
    assert sum(1 for e in kg.item_entities if not neighbours[e]) == 341  # PROTOCOL.md §4.5


def test_spot_check_first_test_conversation(redial):
    """Conversation 20001: 'Hi I am looking for a movie like @111776' / 'You should watch @151656' / ..."""
    test = redial.splits["test"]
    dialogue = test.dialogues[0]
    assert dialogue.id == "20001"
    titles = redial.catalogue.titles
    first, second, third = test.rec_samples[:3]
    assert first.uid == "test/20001/1/0" and len(test.context(first)) == 1
    assert titles[first.label] == "Police Academy (1984)"  # catalogue "Police Academy  (1984)", collapsed
    assert [titles[i] for i in first.context_items] == ["Super Troopers (2001)"] and first.is_novel
    # seeker messages 3 and 4 merge into turn 2; "@192131" is "American Pie " in the catalogue
    assert dialogue.turns[2].role == SEEKER
    assert dialogue.turns[2].text == "Is that a great one? I have never seen it. I have seen American Pie I mean American Pie (1999)"
    assert dialogue.turns[1].masked_text == "You should watch <movie>"
    # turn 3: "Yes @151656 is very funny and so is @94688": two labels, the first already mentioned
    assert (second.turn, third.turn) == (3, 3) and len(test.context(second)) == 3
    assert titles[second.label] == "Police Academy (1984)" and not second.is_novel
    assert titles[third.label] == "Police Academy 2: Their First Assignment (1985)" and third.is_novel
    assert [titles[i] for i in second.context_items] == [
        "American Pie (1999)", "American Pie", "Police Academy (1984)", "Super Troopers (2001)"]


def test_entity_linking_on_real_text(redial):
    names = redial.kg.entity_names
    n = redial.num_items
    linked = [(turn, [names[e] for e in turn.entities if e >= n])
              for d in redial.splits["test"].dialogues for turn in d.turns]
    with_person = [(t.text, found) for t, found in linked if "Adam Sandler" in found]
    assert with_person and all("adam sandler" in text.lower() for text, _ in with_person)
    # every turn's entities end with exactly its movies
    assert all(t.entities[len(t.entities) - len(t.items):] == t.items for t, _ in linked)
    assert "entity_linking" in redial.info


# --- tiny files -------------------------------------------------------------------------------


MOVIES = [("10", "Alpha (2000)", "3"), ("20", "Beta  (2001)", "1"), ("30", "Gamma &amp; Delta (2002)", "0")]
METADATA = {
    "10": {"name": "Alpha", "genre": ["drama"], "director": ["Jane Roe"], "writer": [], "star": ["Tom Hanks", " Jane Roe "]},
    "20": {"name": "Beta", "genre": ["comedy", "drama"], "director": [], "writer": ["Bob"], "star": []},
}


def conversation(cid, messages, seeker=1, recommender=2):
    return {"conversationId": str(cid), "initiatorWorkerId": seeker, "respondentWorkerId": recommender,
            "movieMentions": {}, "initiatorQuestions": {}, "respondentQuestions": {},
            "messages": [{"senderWorkerId": s, "text": t, "timeOffset": i, "messageId": i}
                         for i, (s, t) in enumerate(messages)]}


MAIN = conversation(7, [
    (1, "I love drama like @10"), (2, "Try @20 with Jane  Roe"), (2, "or @30"),
    (1, "ok @20"), (2, "@20 again, @20! with jane roe and Bob"),
])
FILLER = [conversation(100 + i, [(1, "hi"), (2, "hello")]) for i in range(11)]


def write_tiny(directory: Path, gz: bool = False, train=None, test=None, metadata=True,
               overrides: dict[str, str] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["movieId", "movieName", "nbMentions"])
    writer.writerows(MOVIES)
    texts = {
        "movies_with_mentions.csv": buffer.getvalue(),
        "train_data.jsonl": "".join(json.dumps(c) + "\n" for c in (train if train is not None else [MAIN, *FILLER])),
        "test_data.jsonl": "".join(json.dumps(c) + "\n" for c in (test if test is not None else [MAIN])),
    }
    if metadata:
        texts["movie_metadata.json"] = json.dumps(METADATA)
    texts.update(overrides or {})
    for name, text in texts.items():
        if gz:
            with gzip.open(directory / f"{name}.gz", "wt", encoding="utf-8") as out:
                out.write(text)
        else:
            (directory / name).write_text(text, encoding="utf-8")
    return directory


def test_tiny_kg_rule(tmp_path):
    ds = build_redial(write_tiny(tmp_path))
    kg = ds.kg
    # movies 0..2, genres comedy=3 drama=4, persons Bob=5 "Jane Roe"=6 "Tom Hanks"=7 (stripped, one node each)
    assert kg.num_entities == 8
    assert kg.entity_names == ["Alpha (2000)", "Beta (2001)", "Gamma & Delta (2002)", "comedy", "drama",
                               "Bob", "Jane Roe", "Tom Hanks"]
    assert sorted(zip(kg.heads, kg.relations, kg.tails)) == [
        (0, 0, 4), (0, 1, 6), (0, 3, 6), (0, 3, 7), (1, 0, 3), (1, 0, 4), (1, 2, 5)]
    assert ds.info["kg"]["movies_without_metadata"] == 1


def test_tiny_turns_and_samples(tmp_path):
    ds = build_redial(write_tiny(tmp_path))
    test = ds.splits["test"]
    turns = test.dialogues[0].turns
    assert [t.role for t in turns] == [SEEKER, RECOMMENDER, SEEKER, RECOMMENDER]
    assert turns[1].text == "Try Beta (2001) with Jane Roe or Gamma & Delta (2002)"
    assert turns[1].masked_text == "Try <movie> with Jane Roe or <movie>"
    assert turns[0].entities == (4, 0)  # linked "drama", then the movie
    assert turns[1].entities == (6, 1, 2)  # "Jane  Roe" (whitespace collapsed), then movies
    assert turns[3].items == (1, 1) and turns[3].entities == (6, 1, 1)  # "Bob": single-token person, not linked
    samples = [(s.turn, s.label, s.context_items, s.is_novel) for s in test.rec_samples]
    assert samples == [(1, 1, (0,), True), (1, 2, (0,), True), (3, 1, (1, 2, 0), False)]  # turn 3 deduplicated
    assert test.rec_samples[2].context_entities == (4, 0, 6, 1, 2)
    assert [c.reference for c in test.conv_samples] == ["Try <movie> with Jane Roe or <movie>",
                                                         "<movie> again, <movie>! with jane roe and Bob"]


def test_tiny_linking_can_be_disabled(tmp_path):
    ds = build_redial(write_tiny(tmp_path), link_entities=False)
    assert ds.splits["test"].dialogues[0].turns[1].entities == (1, 2)
    assert ds.info["entity_linking"].startswith("disabled")


def test_tiny_valid_rule(tmp_path):
    ds = build_redial(write_tiny(tmp_path))
    ids = sorted([7, *range(100, 111)])
    random.Random(42).shuffle(ids)
    assert [d.id for d in ds.splits["valid"].dialogues] == [str(ids[0])]  # floor(12 / 10) = 1
    assert len(ds.splits["train"].dialogues) == 11
    assert [int(d.id) for d in ds.splits["train"].dialogues] == sorted(int(d.id) for d in ds.splits["train"].dialogues)


def test_missing_metadata_gives_no_kg(tmp_path):
    ds = build_redial(write_tiny(tmp_path, metadata=False))
    assert ds.kg is None and "not found" in ds.info["kg"]
    assert ds.splits["test"].dialogues[0].turns[1].entities == (1, 2)  # movies only
    assert ds.catalogue.metadata is None


def test_plain_and_gz_are_equivalent(tmp_path):
    plain = build_redial(write_tiny(tmp_path / "plain"))
    packed = build_redial(write_tiny(tmp_path / "packed", gz=True))
    for name in ("train", "valid", "test"):
        assert plain.splits[name].dialogues == packed.splits[name].dialogues
        assert plain.splits[name].rec_samples == packed.splits[name].rec_samples
    assert plain.kg == packed.kg and plain.catalogue == packed.catalogue
    assert plain.info["train_file_sha256"] == packed.info["train_file_sha256"]


def test_unknown_movie_id(tmp_path):
    bad = conversation(8, [(1, "hi"), (2, "watch @99")])
    with pytest.raises(DataError) as error:
        build_redial(write_tiny(tmp_path, test=[MAIN, bad]))
    assert error.value.file.endswith("test_data.jsonl") and error.value.line == 2
    assert error.value.field == "messages[1].text" and "@99" in str(error.value)


def test_message_without_sender(tmp_path):
    bad = conversation(8, [(1, "hi")])
    del bad["messages"][0]["senderWorkerId"]
    with pytest.raises(DataError) as error:
        build_redial(write_tiny(tmp_path, test=[bad]))
    assert error.value.line == 1 and error.value.field == "messages[0].senderWorkerId"
    assert "test_data.jsonl:1" in str(error.value)


def test_truncated_json_line(tmp_path):
    text = json.dumps(MAIN) + "\n" + json.dumps(MAIN)[:-5] + "\n"
    with pytest.raises(DataError) as error:
        build_redial(write_tiny(tmp_path, overrides={"test_data.jsonl": text}))
    assert error.value.line == 2 and "test_data.jsonl:2" in str(error.value)


def test_bad_catalogue_row(tmp_path):
    text = "movieId,movieName,nbMentions\n10,Alpha,1\nx1,Beta,2\n"
    with pytest.raises(DataError) as error:
        build_redial(write_tiny(tmp_path, overrides={"movies_with_mentions.csv": text}))
    assert error.value.line == 3 and error.value.field == "movieId"


def test_missing_file(tmp_path):
    directory = write_tiny(tmp_path)
    (directory / "movies_with_mentions.csv").unlink()
    with pytest.raises(DataError, match="movies_with_mentions.csv.*missing"):
        build_redial(directory)


def test_bad_metadata_field(tmp_path):
    bad = {"10": {"genre": "drama"}}
    with pytest.raises(DataError) as error:
        build_redial(write_tiny(tmp_path, overrides={"movie_metadata.json": json.dumps(bad)}))
    assert error.value.field == "10.genre"


def test_unknown_param(tmp_path):
    with pytest.raises(ValueError, match="unknown parameter"):
        build_redial(write_tiny(tmp_path), linking=True)
