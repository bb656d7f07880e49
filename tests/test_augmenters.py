"""The LumiCRS augmenter family: parsing and rule checks, budgets, the file route, caching, and that no
augmenter ever touches valid or test."""
from __future__ import annotations

import copy
import json
import random
import re
from pathlib import Path

import pytest

from harness.api import RunContext
from harness.data import RECOMMENDER, SEEKER, Catalogue, DataError, Dataset, Dialogue, KnowledgeGraph, Split, Turn
from harness.popularity import compute_statistics
from harness.plugin_manager import load_plugins
from plugins.lumicrs import parsing
from plugins.lumicrs.augmenters import (PDAAugmenter, RandomAugmenter, SwapAugmenter, TemplateAugmenter,
                                        passes_similarity, vote_bucket)


@pytest.fixture(scope="module")
def dataset():
    from plugins.synthetic import build_synthetic

    return build_synthetic(num_items=60, train_dialogues=120, valid_dialogues=20, test_dialogues=20)


def context(dataset, cache_dir: Path) -> RunContext:
    train = dataset.splits["train"]
    stats = compute_statistics(dataset.num_items, train.dialogues, train.rec_samples)
    return RunContext(dataset, stats, "cpu", 0, cache_dir, {"tiers": {"head_min": 6, "tail_max": 1}},
                      REGISTRIES)


class ScriptedBackend:
    """Writes a well-formed dialogue recommending the prompt's target; counts its calls."""

    instances: list["ScriptedBackend"] = []

    def __init__(self, cache_dir=None, loop: bool = False):
        self.calls, self.loop = 0, loop
        ScriptedBackend.instances.append(self)

    def identity(self):
        return {"kind": "scripted", "loop": self.loop}

    def chat(self, messages, *, temperature, max_tokens, seed):
        self.calls += 1
        title = re.search(r'movie "([^"]+)"', messages[-1]["content"]).group(1)
        if self.loop:
            return "Seeker: Hi.\nRecommender: A fantastic film! A fantastic film! A fantastic film! A fantastic film!"
        return (f"Seeker: Hello, I want something new to watch number {seed % 97}.\nRecommender: What do you like?\n"
                f"Seeker: Clever plots and good actors.\nRecommender: Then try {title}, you will love it.\n"
                f"Seeker: Great, thanks a lot.\nRecommender: Enjoy the evening!")


REGISTRIES = load_plugins(autoload=False).registries
REGISTRIES.llm_backends.add("scripted", ScriptedBackend, "Test backend: a well-formed dialogue per prompt.")


@pytest.fixture(autouse=True)
def scripted_backend():
    ScriptedBackend.instances.clear()


def pda(ctx, **params):
    return PDAAugmenter(ctx, backend="scripted", encoder="hashing", **params)


# ---------------------------------------------------------------------------------------------- parsing


def test_role_lines_titles_and_masks_become_turns():
    catalogue = Catalogue((10, 20, 30), ("Joker (2019 film)", "Up (2009 film)", "The Matrix"))
    index = parsing.TitleIndex(catalogue)
    raw = parsing.split_roles("Here you go:\n**User:** I loved the matrix.\nAssistant: Then watch Joker!\n"
                              "It is dark.\nSeeker: Anything like Up?\nrecommender: Up is sweet.")
    assert raw == [(SEEKER, "I loved the matrix."), (RECOMMENDER, "Then watch Joker! It is dark."),
                   (SEEKER, "Anything like Up?"), (RECOMMENDER, "Up is sweet.")]
    parsed = parsing.to_turns(raw, index, None, expected=[0])
    assert [t.items for t in parsed.turns] == [(2,), (0,), (), ()]  # "Joker" (5 letters) because expected
    assert parsed.turns[1].masked_text == "Then watch <movie>! It is dark."
    unexpected = parsing.to_turns(raw, index, None, expected=[1])
    assert [t.items for t in unexpected.turns] == [(2,), (), (1,), (1,)]  # short titles only when expected


def test_mandatory_checks_catch_wrong_movie_loops_and_broken_alternation():
    catalogue = Catalogue((1, 2), ("Solaris", "Stalker"))
    index = parsing.TitleIndex(catalogue)

    def checks(text):
        return parsing.mandatory_checks(parsing.to_turns(parsing.split_roles(text), index, None, [0]), 0)

    good = checks("Seeker: Any slow sci-fi?\nRecommender: Solaris is wonderful.")
    assert all(good.values())
    assert not checks("Seeker: Any slow sci-fi?\nRecommender: Stalker is wonderful.")["target_recommended"]
    assert not checks("Seeker: Hi.\nRecommender: Solaris! A fantastic film! A fantastic film! "
                      "A fantastic film!")["no_repetition"]
    twice = checks("Seeker: Hi.\nSeeker: Hello?\nRecommender: Solaris is wonderful.")
    assert not twice["roles_alternate"] and twice["target_recommended"]
    assert not checks("no roles here Solaris")["parsed"]


def test_similarity_filter_and_vote_buckets_follow_the_paper():
    assert passes_similarity(0.85, 0.85) and not passes_similarity(0.851, 0.85)
    assert [vote_bucket(v, accept=4, review=2) for v in (5, 4, 3, 2, 1, 0)] == \
        ["accept", "accept", "review", "review", "reject", "reject"]


# ------------------------------------------------------------------------------------- valid/test untouched


@pytest.mark.parametrize("name", ["random", "template", "swap", "pda"])
def test_augmenters_never_touch_valid_or_test_and_mark_output_synthetic(dataset, tmp_path, name):
    held_out = {split: copy.deepcopy(dataset.splits[split]) for split in ("valid", "test")}
    train = list(dataset.splits["train"].dialogues)
    train_copy = copy.deepcopy(train)
    ctx = context(dataset, tmp_path)
    augmenter = {"random": lambda: RandomAugmenter(ctx), "template": lambda: TemplateAugmenter(ctx),
                 "swap": lambda: SwapAugmenter(ctx, encoder="hashing"), "pda": lambda: pda(ctx, max_items=4)}[name]()
    added = augmenter.augment(train, random.Random(0))
    assert added and all(d.synthetic for d in added)
    assert len(added) <= int(0.3 * len(train))
    assert train == train_copy  # the input is not modified
    for split, before in held_out.items():
        assert dataset.splits[split] == before
    held_out_ids = {d.id for split in held_out.values() for d in split.dialogues}
    assert len({d.id for d in added}) == len(added) and not held_out_ids & {d.id for d in added}
    stats = augmenter.statistics()
    assert stats["accepted"] == len(added)
    assert stats["generated"] == stats["filtered"] + stats["accepted"] + stats["not_kept_by_ratio_cap"]


def test_runner_adds_augmented_dialogues_to_train_only(tmp_path):
    from harness.config import resolve
    from harness.plugin_manager import BUILTIN_PLUGINS, load_plugins
    from harness.runner import execute

    plugins = load_plugins([] if "plugins.lumicrs" in BUILTIN_PLUGINS else ["plugins.lumicrs"], autoload=False)
    records = {}
    for augmenter in ("none", "template"):
        [config] = resolve(flags={"model": "popularity", "augmenter": augmenter},
                           overrides=["dataset.params.train_dialogues=100", "dataset.params.valid_dialogues=20",
                                      "dataset.params.test_dialogues=20", "dataset.params.num_items=80"])
        records[augmenter] = execute(config, plugins, results_dir=tmp_path / augmenter, cache_dir=tmp_path / "c",
                                     quiet=True)
    none, template = records["none"]["dataset"]["splits"], records["template"]["dataset"]["splits"]
    assert template["train"]["synthetic_dialogues"] == records["template"]["augmentation"]["added_dialogues"] == 30
    assert template["train"]["dialogues"] == none["train"]["dialogues"] + 30
    assert template["valid"] == none["valid"] and template["test"] == none["test"]
    # popularity (the metric tiers) ignores synthetic dialogues: identical tier sizes with and without
    assert records["template"]["dataset"]["popularity"] == records["none"]["dataset"]["popularity"]


# ------------------------------------------------------------------------------------------- per augmenter


def test_template_dialogues_each_give_one_sample_labelled_with_their_target(dataset, tmp_path):
    from harness.data import build_samples

    ctx = context(dataset, tmp_path)
    augmenter = TemplateAugmenter(ctx, ratio=None, per_tail=2, per_body=1)
    added = augmenter.augment(list(dataset.splits["train"].dialogues), random.Random(0))
    tiers = ctx.stats.tiers
    body = [i for i in range(dataset.num_items) if tiers[i] == "body" and ctx.stats.popularity[i] >= 1]
    tail = [i for i in range(dataset.num_items) if tiers[i] == "tail" and ctx.stats.popularity[i] >= 1]
    assert len(added) == len(body) + 2 * len(tail)
    samples, _ = build_samples("train", added, dataset.dedup_turn_labels)
    assert len(samples) == len(added)
    assert [s.label for s in samples] == [d.meta["target"] for d in added]
    assert augmenter.statistics()["per_tier"]["tail"] == {"generated": 2 * len(tail), "filtered": 0,
                                                          "accepted": 2 * len(tail)}


def tiny_swap_world():
    """Movies 0..3; 0 and 1 share the genre entity 4; 2 shares nothing with 0; item 3 is the support pool."""
    catalogue = Catalogue((1, 2, 3, 4), ("Alpha Run (1990)", "Beta Storm (1991)", "Gamma Lake (1992)", "Delta"))
    kg = KnowledgeGraph(6, ["genre", "self_loop"], [0, 1, 2], [0, 0, 0], [4, 4, 5], [0, 1, 2, 3],
                        ["Alpha Run (1990)", "Beta Storm (1991)", "Gamma Lake (1992)", "Delta", "noir", "musical"],
                        self_loop_relation=1)

    def turn(role, text, items=()):
        return Turn(role, text, tuple(items), tuple(items), re.sub(r"Beta Storm|Gamma Lake", "<movie>", text))

    source = Dialogue("s", [turn(SEEKER, "I like noir."), turn(RECOMMENDER, "Try Beta Storm or Gamma Lake.", [1, 2]),
                            turn(SEEKER, "Beta Storm was fun.", [1])])
    dataset = Dataset("tiny", catalogue, {"train": Split("train", [source])}, kg)
    return dataset, source


def test_swap_replaces_the_kg_closest_recommended_movie_everywhere(tmp_path):
    from harness.popularity import ItemStatistics

    dataset, source = tiny_swap_world()
    ctx = RunContext(dataset, ItemStatistics([0, 1, 1, 0], [0, 1, 1, 0]), "cpu", 0, tmp_path, {})
    swap = SwapAugmenter(ctx, encoder="hashing")
    shared = swap._shared().toarray()
    assert shared[0].tolist() == [2, 1, 0, 0]  # itself + genre; Beta shares the genre entity
    turns = swap._swap(source, 0, shared[0], dataset.catalogue.titles)
    assert [t.text for t in turns] == ["I like noir.", "Try Alpha Run or Gamma Lake.", "Alpha Run was fun."]
    assert [t.items for t in turns] == [(), (0, 2), (0,)]
    assert turns[1].entities == (0, 2)
    assert swap._swap(source, 3, shared[3], dataset.catalogue.titles) == "no_kg_close_movie"
    assert swap._swap(source, 1, shared[1], dataset.catalogue.titles) == "already_mentions_target"


# --------------------------------------------------------------------------------------------------- PDA


def test_pda_statistics_per_tier_and_recorded_policy(dataset, tmp_path):
    ctx = context(dataset, tmp_path)
    augmenter = pda(ctx, max_items=5, per_tail=3, per_body=2, ratio=None)
    added = augmenter.augment(list(dataset.splits["train"].dialogues), random.Random(0))
    stats = augmenter.statistics()
    tiers = [tier for _, tier in augmenter._targets()]
    assert stats["generated"] == 3 * tiers.count("tail") + 2 * tiers.count("body") == stats["llm_calls"]
    assert stats["accepted"] == len(added) and stats["filtered"] == stats["generated"] - len(added)
    assert stats["review_policy"] == "no human reviewer: review band is rejected"
    assert stats["judges"] == list(augmenter.judges) and stats["backend"] == {"kind": "scripted", "loop": False}
    for dialogue in added:
        assert dialogue.meta["target"] in dialogue.turns[3].items and dialogue.turns[3].role == RECOMMENDER


def test_degenerate_generations_are_filtered_and_counted(dataset, tmp_path):
    ctx = context(dataset, tmp_path)
    augmenter = pda(ctx, max_items=3, backend_params={"loop": True}, ratio=None)
    assert augmenter.augment(list(dataset.splits["train"].dialogues), random.Random(0)) == []
    stats = augmenter.statistics()
    assert stats["accepted"] == 0 and stats["filtered"] == stats["generated"] > 0
    assert set(stats["filter_reasons"]) == {"rule:target_recommended"}


def test_cached_second_pda_run_makes_zero_llm_calls(dataset, tmp_path):
    train = list(dataset.splits["train"].dialogues)
    first = pda(context(dataset, tmp_path), max_items=4)
    added_first = first.augment(train, random.Random(0))
    assert first.statistics()["llm_calls"] > 0
    second = pda(context(dataset, tmp_path), max_items=4)
    added_second = second.augment(train, random.Random(0))
    assert second.statistics()["llm_calls"] == 0 and ScriptedBackend.instances[-1].calls == 0
    assert second.statistics()["cache_hits"] == first.statistics()["llm_calls"]
    assert [d.turns for d in added_second] == [d.turns for d in added_first]


def test_call_budget_stops_generation_and_is_recorded(dataset, tmp_path):
    augmenter = pda(context(dataset, tmp_path), max_items=10, max_calls=3, ratio=None)
    augmenter.augment(list(dataset.splits["train"].dialogues), random.Random(0))
    stats = augmenter.statistics()
    assert stats["llm_calls"] == 3 and stats["generated"] == 3 and stats["budget_exhausted"] is True


def write_jsonl(path: Path, records) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def test_pda_loads_accepted_dialogues_from_a_jsonl_file(dataset, tmp_path):
    ctx = context(dataset, tmp_path)
    titles, ids = dataset.catalogue.titles, dataset.catalogue.ids
    path = write_jsonl(tmp_path / "accepted.jsonl", [
        {"movie": ids[5], "tier": "tail", "text": f"Seeker: Something new?\nRecommender: Watch {titles[5]}.",
         "provenance": "gpt-4o + review"},
        {"movie": ids[7], "turns": [{"role": "seeker", "text": "Hi!"},
                                    {"role": "recommender", "text": f"{titles[7]} is great."}]}])
    augmenter = PDAAugmenter(ctx, augmentation_file=str(path))
    added = augmenter.augment(list(dataset.splits["train"].dialogues), random.Random(0))
    assert [d.meta["target"] for d in added] == [5, 7]
    assert added[0].turns[1].items == (5,) and added[0].meta["provenance"] == "gpt-4o + review"
    assert augmenter.statistics()["source"] == "file"


@pytest.mark.parametrize("line, field, message", [
    ("{not json", None, "invalid JSON"),
    ({"movie": 99999, "text": "Seeker: a\nRecommender: b"}, "movie", "not a catalogue item id"),
    ({"movie": "x", "text": "Seeker: a"}, "movie", "not a catalogue item id"),
    ({"movie": 1, "tier": "torso", "text": "Seeker: a"}, "tier", "head, body or tail"),
    ({"movie": 1}, "text", "non-empty"),
    ({"movie": 1, "turns": [{"role": "narrator", "text": "x"}]}, "turns[0]", "role"),
    ({"movie": 1, "text": "Seeker: hi\nRecommender: watch something else"}, "text", "target_recommended"),
])
def test_pda_file_errors_name_file_line_and_field(dataset, tmp_path, line, field, message):
    good = {"movie": dataset.catalogue.ids[0],
            "text": f"Seeker: Hi\nRecommender: Try {dataset.catalogue.titles[0]}."}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, line])
    augmenter = PDAAugmenter(context(dataset, tmp_path), augmentation_file=str(path))
    with pytest.raises(DataError) as caught:
        augmenter.augment(list(dataset.splits["train"].dialogues), random.Random(0))
    assert caught.value.file == str(path) and caught.value.line == 2 and caught.value.field == field
    assert message in str(caught.value)


def test_pda_names_an_unknown_backend_before_any_work(dataset, tmp_path):
    from harness.registry import RegistryError

    with pytest.raises(RegistryError, match="unknown LLM backend 'scriptd': did you mean 'scripted'"):
        PDAAugmenter(context(dataset, tmp_path), backend="scriptd", encoder="hashing")
    with pytest.raises(RegistryError, match="unknown LLM backend 'judge-x'"):
        PDAAugmenter(context(dataset, tmp_path), backend="scripted", encoder="hashing",
                     judges=["rule:length", "llm:judge-x"], accept_votes=1, review_votes=0)
