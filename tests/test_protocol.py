"""Sample construction (PROTOCOL.md §1.3-1.5) and the two reference baselines on hand-made dialogues."""
from __future__ import annotations

import numpy as np
import torch

from harness.api import RunContext
from harness.data import RECOMMENDER, SEEKER, Catalogue, Dataset, Dialogue, Split, Turn, build_samples, merge_turns
from harness.evaluation import rank_split
from harness.popularity import compute_statistics
from plugins.baselines import PopularityRanker, RepeatContextRanker

A, B, C, D = 0, 1, 2, 3


def turn(role, *items):
    return Turn(role, f"text {items}", tuple(items), tuple(items), "masked")


def test_merge_joins_consecutive_same_role_messages():
    merged = merge_turns([turn(SEEKER, A), turn(SEEKER, B), turn(RECOMMENDER), turn(RECOMMENDER, C)])
    assert [t.role for t in merged] == [SEEKER, RECOMMENDER]
    assert merged[0].items == (A, B) and merged[1].items == (C,)
    assert merged[0].text == "text (0,) text (1,)"


def dialogue():
    # turn 0 seeker mentions A; 1 recommender B; 2 seeker -; 3 recommender A, C (two labels, A repeated);
    # 4 recommender-first rule does not apply; 5 recommender D
    return Dialogue("d0", [turn(RECOMMENDER, D), turn(SEEKER, A), turn(RECOMMENDER, B), turn(SEEKER),
                           turn(RECOMMENDER, A, C, A), turn(SEEKER), turn(RECOMMENDER)])


def test_sample_rules_first_turn_labels_novelty_and_conversation_samples():
    rec, conv = build_samples("test", [dialogue()], dedup_turn_labels=False)
    # turn 0 is a recommender turn but t = 0: no sample; duplicates kept (INSPIRED rule)
    assert [(s.turn, s.label) for s in rec] == [(2, B), (4, A), (4, C), (4, A)]
    assert [s.is_novel for s in rec] == [True, False, True, False]
    assert rec[1].context_items == (B, A, D)  # most recent first
    assert len({s.context_id for s in rec}) == 2
    assert [c.turn for c in conv] == [2, 4, 6]  # every recommender turn t >= 1, with or without movies
    rec_dedup, _ = build_samples("test", [dialogue()], dedup_turn_labels=True)
    assert [(s.turn, s.label) for s in rec_dedup] == [(2, B), (4, A), (4, C)]  # ReDial rule


def small_dataset(dialogues, num_items=60):
    split = Split("test", dialogues)
    split.rec_samples, split.conv_samples = build_samples("test", dialogues, True)
    catalogue = Catalogue(tuple(range(100, 100 + num_items)), tuple(f"m{i}" for i in range(num_items)))
    return Dataset("toy", catalogue, {"train": split, "valid": split, "test": split}, fingerprint="x")


def test_repeat_context_orders_by_last_mention():
    # SYSTEMS.md §3 test 1: A (turn 1), B (turn 2), then A, C in turn 3 -> C, A, B first
    d = Dialogue("d", [turn(SEEKER), turn(SEEKER, A), turn(RECOMMENDER, B), turn(SEEKER, A, C), turn(RECOMMENDER, D)])
    dataset = small_dataset([Dialogue("d", merge_turns(d.turns))])
    stats = compute_statistics(dataset.num_items, dataset.splits["train"].dialogues, [])
    model = RepeatContextRanker(RunContext(dataset, stats))
    lists = rank_split(model, dataset.splits["test"], batch_size=8)
    top = lists["standard"].top
    assert top[-1][:4].tolist() == [C, A, B, D]  # then ascending item id, skipping context items
    # novel: context items removed, the rest in id order
    assert lists["novel"].top[-1][:3].tolist() == [D, 4, 5]


def test_repeat_context_fills_agree_on_recall_at_1_and_pop_fill_equals_popularity_in_novel(synthetic):
    stats = compute_statistics(synthetic.num_items, synthetic.splits["train"].dialogues,
                               synthetic.splits["train"].rec_samples)
    ctx = RunContext(synthetic, stats)
    test = synthetic.splits["test"]
    by_id = rank_split(RepeatContextRanker(ctx), test, 64)
    by_pop = rank_split(RepeatContextRanker(ctx, fill="popularity"), test, 64)
    popular = rank_split(PopularityRanker(ctx), test, 64)
    with_context = np.array([bool(s.context_items) for s in test.rec_samples])
    rows = by_id["standard"].sample_context[with_context]
    assert (by_id["standard"].top[rows, 0] == by_pop["standard"].top[rows, 0]).all()
    assert (by_pop["novel"].top == popular["novel"].top).all()


def test_popularity_ties_break_by_item_id_and_novel_masks_context():
    d = Dialogue("d", [turn(SEEKER, 5), turn(RECOMMENDER, 7), turn(SEEKER), turn(RECOMMENDER, 9)])
    dataset = small_dataset([d])
    stats = compute_statistics(dataset.num_items, [d], [])
    assert stats.popularity[5] == stats.popularity[7] == stats.popularity[9] == 1
    model = PopularityRanker(RunContext(dataset, stats))
    assert torch.equal(model.scores(2)[0], model.scores(2)[1])
    lists = rank_split(model, dataset.splits["test"], batch_size=8)
    assert lists["standard"].top[0][:4].tolist() == [5, 7, 9, 0]
    assert lists["novel"].top[1][:3].tolist() == [9, 0, 1]  # 5 and 7 are context items of the 2nd context
