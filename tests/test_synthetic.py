"""The embedded dataset: deterministic, protocol-shaped, with recoverable preferences."""
from __future__ import annotations

import collections

from plugins.synthetic import GENRES, build_synthetic


def test_generation_is_deterministic_and_seeded():
    a, b = build_synthetic(num_items=50, train_dialogues=30), build_synthetic(num_items=50, train_dialogues=30)
    assert [t.text for d in a.splits["train"].dialogues for t in d.turns] == \
           [t.text for d in b.splits["train"].dialogues for t in d.turns]
    c = build_synthetic(num_items=50, train_dialogues=30, seed=1)
    assert a.catalogue.titles != c.catalogue.titles


def test_default_size_and_sample_counts(synthetic):
    assert synthetic.num_items == 300
    assert {name: len(s.dialogues) for name, s in synthetic.splits.items()} == {"train": 600, "valid": 100, "test": 100}
    test = synthetic.splits["test"]
    assert 0 < len(test.rec_samples_for("novel")) < len(test.rec_samples_for("standard"))
    assert all(s.turn >= 1 for s in test.rec_samples)
    assert len(synthetic.kg.item_entities) == 300


def test_labels_share_the_genre_named_in_the_opening_turn(synthetic):
    """Preferences are recoverable from the text: the label's genres contain the opener's genre."""
    train = synthetic.splits["train"]
    agree = 0
    for sample in train.rec_samples:
        opener = train.dialogues[sample.dialogue_index].turns[0].text.lower()
        genre = next(g for g in GENRES if g in opener)
        agree += genre in synthetic.catalogue.metadata[sample.label]["genre"]
    assert agree / len(train.rec_samples) > 0.95


def test_popularity_is_long_tailed(synthetic):
    counts = collections.Counter(s.label for s in synthetic.splits["train"].rec_samples)
    ordered = [c for _, c in counts.most_common()]
    top_decile = sum(ordered[: len(ordered) // 10])
    assert top_decile / sum(ordered) > 0.3
