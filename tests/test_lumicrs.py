"""LumiCRS: segmentation, composite score, exemplar dialogues and the class-prototype contrastive model."""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from harness.data import RECOMMENDER, SEEKER, Dialogue, Turn
from harness.popularity import ItemStatistics, TierThresholds
from plugins.lumicrs.exemplars import CompositeWeights, composite_scores, incidence, segment, select_exemplars


def dialogue(name: str, *items: int) -> Dialogue:
    return Dialogue(name, [Turn(SEEKER, "hi", (), (), "hi"), Turn(RECOMMENDER, "watch", tuple(items), (), "watch")])


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return v / np.linalg.norm(v)


# ------------------------------------------------------------------------------------------ segmentation


def test_segmentation_uses_training_tiers_and_drops_cold_items():
    stats = ItemStatistics([10, 3, 1, 0, 2, 6, 5], [0] * 7, TierThresholds(head_min=6, tail_max=1))
    tiers = segment(stats)
    assert tiers["body"].tolist() == [1, 4, 6]
    assert tiers["tail"].tolist() == [2]  # item 3 is cold: no dialogue, no exemplar


# ----------------------------------------------------------------------------------------- composite score


def test_composite_score_on_hand_made_dialogues():
    dialogues = [dialogue("a", 0, 1), dialogue("b", 1, 2), dialogue("c", 3)]
    embeddings = np.stack([unit(1, 0), unit(0.6, 0.8), unit(0, 1)])
    emotions = np.array([[0.1, 0.5, 0.4, 0.2], [0.3, 0.5, 0.2, -0.1], [0.1, 0.5, 0.4, 0.2]])
    movies = incidence(dialogues, 4)
    scores = composite_scores(np.array([0]), embeddings, emotions, movies, CompositeWeights())
    # a vs b: sem 0.6; L1 = 0.2 + 0 + 0.2 + 0.3 = 0.7 -> emo 1/1.7; one shared movie; R = sem·emo·σ(1)
    sem, emo, mov = 0.6, 1 / 1.7, 1.0
    r = sem * emo / (1 + math.exp(-1.0))
    assert scores[0, 1] == pytest.approx(0.4 * sem + 0.2 * emo + 0.2 * mov + 0.2 * r, abs=1e-12)
    # a vs c: orthogonal, identical emotions (emo 1), nothing shared: R = 0
    assert scores[0, 2] == pytest.approx(0.2 * 1.0, abs=1e-12)
    # a vs a: sem 1, emo 1, two shared movies
    assert scores[0, 0] == pytest.approx(0.4 + 0.2 + 0.2 * 2 + 0.2 / (1 + math.exp(-2.0)), abs=1e-12)
    jaccard = composite_scores(np.array([0]), embeddings, emotions, movies,
                               CompositeWeights(normalize_mov=True))
    # normalised: |{1}| / |{0,1,2}| = 1/3
    r = sem * emo / (1 + math.exp(-1 / 3))
    assert jaccard[0, 1] == pytest.approx(0.4 * sem + 0.2 * emo + 0.2 / 3 + 0.2 * r, abs=1e-12)


def test_composite_weights_must_sum_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        CompositeWeights(0.5, 0.2, 0.2, 0.2)


# ------------------------------------------------------------------------------------- exemplar selection


def toy_corpus():
    # item 0 is head (6 dialogues), item 1 body (3 dialogues: 0, 1, 2), item 2 tail (only dialogue 3)
    dialogues = [dialogue("d0", 1, 0), dialogue("d1", 1), dialogue("d2", 1, 0), dialogue("d3", 2),
                 dialogue("d4", 0), dialogue("d5", 0), dialogue("d6", 0), dialogue("d7", 0)]
    embeddings = np.stack([unit(1, 0.1), unit(1, 0.5), unit(1, 1), unit(0, 1), unit(1, 0.2), unit(0.2, 1),
                           unit(0.5, 1), unit(1, 0)])
    emotions = np.zeros((8, 4))
    stats = ItemStatistics([6, 3, 1], [0, 0, 0])
    return dialogues, embeddings, emotions, stats


def test_exemplar_is_the_member_nearest_to_the_centroid_and_support_excludes_it():
    dialogues, embeddings, emotions, stats = toy_corpus()
    chosen = select_exemplars(dialogues, stats, embeddings, emotions, support_size=2)
    assert chosen.items.tolist() == [1, 2] and chosen.tiers == ["body", "tail"]
    centroid = embeddings[[0, 1, 2]].mean(0)
    assert chosen.exemplar_of(1) == int(np.argmax(embeddings[[0, 1, 2]] @ centroid)) == 1
    assert chosen.exemplar_of(2) == 3  # a singleton's exemplar is its only dialogue
    final = composite_scores(np.array([1]), embeddings, emotions, incidence(dialogues, 3), CompositeWeights())[0]
    final[1] = -np.inf
    assert chosen.support_of(1) == np.argsort(-final, kind="stable")[:2].tolist()
    assert 1 not in chosen.support_of(1)


def test_composite_rule_takes_the_member_with_the_best_mean_score_to_the_others():
    dialogues, embeddings, emotions, stats = toy_corpus()
    chosen = select_exemplars(dialogues, stats, embeddings, emotions, rule="composite")
    final = composite_scores(np.arange(8), embeddings, emotions, incidence(dialogues, 3), CompositeWeights())
    members = [0, 1, 2]
    means = [np.mean([final[x, y] for y in members if y != x]) for x in members]
    assert chosen.exemplar_of(1) == members[int(np.argmax(means))]


def test_exemplar_selection_is_deterministic_and_breaks_ties_by_lower_index():
    dialogues = [dialogue(f"d{i}", 0) for i in range(4)]
    embeddings = np.tile(unit(1, 1), (4, 1))  # all identical: every member ties
    stats = ItemStatistics([4], [0], TierThresholds(head_min=6, tail_max=1))
    first = select_exemplars(dialogues, stats, embeddings, np.zeros((4, 4)), support_size=3, chunk=3)
    second = select_exemplars(dialogues, stats, embeddings, np.zeros((4, 4)), support_size=3, chunk=2)
    assert first.exemplar_of(0) == second.exemplar_of(0) == 0
    assert first.support_of(0) == second.support_of(0) == [1, 2, 3]


# ------------------------------------------------------------------------------------------------ model


@pytest.fixture(scope="module")
def small():
    from harness.api import RunContext
    from harness.popularity import compute_statistics
    from plugins.synthetic import build_synthetic

    dataset = build_synthetic(num_items=40, train_dialogues=80, valid_dialogues=10, test_dialogues=10)
    train = dataset.splits["train"]
    stats = compute_statistics(dataset.num_items, train.dialogues, train.rec_samples)
    return RunContext(dataset, stats, "cpu", 0, Path("unused-cache"), {})


def build(ctx, **params):
    import torch

    from plugins.lumicrs.model import LumiCRS

    torch.manual_seed(0)  # the backbone's initialisation (the runner seeds every run the same way)
    return LumiCRS(ctx, use_text=False, dim=16, num_prototypes=4, **params)


def test_variants_own_their_class_prototypes_as_the_paper_table_describes(small):
    import torch

    learned = build(small)
    assert isinstance(learned.class_prototypes, torch.nn.Parameter) and learned.class_prototypes.shape == (4, 16)
    frozen = build(small, prototypes="kmeans-frozen")
    assert not frozen.class_prototypes.requires_grad and "class_prototypes" in dict(frozen.named_buffers())
    assert torch.allclose(frozen.class_prototypes, learned.class_prototypes.detach())  # same seed, same k-means
    assert torch.allclose(frozen.class_prototypes.norm(dim=1), torch.ones(4))
    random_frozen = build(small, prototypes="random-frozen")
    assert not random_frozen.class_prototypes.requires_grad
    assert build(small, prototypes="off").class_prototypes is None
    assert build(small, prototypes=False).variant == "off"  # YAML 1.1 reads a bare `off` as false
    with pytest.raises(ValueError, match="prototypes must be one of"):
        build(small, prototypes="sometimes")


def test_class_prototype_loss_pulls_representations_to_the_assigned_class_prototype():
    """Toy case: fixed class prototypes e1, e2; an item near e1 and a context far from it; minimising the loss
    over the context moves it towards e1 (and away from e2)."""
    import torch

    from plugins.lumicrs.model import LumiCRS

    model = LumiCRS.__new__(LumiCRS)
    torch.nn.Module.__init__(model)
    model.class_prototype_temperature = 0.1
    model.register_buffer("class_prototypes", torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    model.register_buffer("segmented", torch.tensor([True, False]))
    items = torch.tensor([[0.9, 0.2], [0.0, 1.0]])  # item 0 (body) is assigned to class prototype 0
    u = torch.nn.Parameter(torch.tensor([[0.1, 1.0], [0.3, 0.3]]))
    labels = torch.tensor([0, 1])  # sample 1 is a head item: it never enters the loss
    optimizer = torch.optim.SGD([u], lr=0.5)

    def cos_to_class_prototype_0() -> float:
        return float(torch.nn.functional.cosine_similarity(u[0].detach(), model.class_prototypes[0], dim=0))

    before, losses = cos_to_class_prototype_0(), []
    for _ in range(20):
        loss = model.class_prototype_loss(u, items, labels)
        losses.append(float(loss.detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert cos_to_class_prototype_0() > before + 0.5
    assert losses[-1] < losses[0]
    assert u.grad[1].abs().sum() == 0  # the head sample is untouched
    head_only = model.class_prototype_loss(u, items, torch.tensor([1, 1]))
    assert float(head_only.detach()) == 0.0


def test_zero_weight_reproduces_plain_loss_training_exactly(small):
    import torch


    model = build(small, proto_weight=0.0, dropout=0.0)
    split = small.dataset.splits["train"]
    samples = split.rec_samples[:16]
    batch = model.make_batch(split, samples)
    labels = torch.tensor([s.label for s in samples])
    model.train()
    loss_fn = torch.nn.functional.cross_entropy
    assert torch.equal(model.training_loss(batch, labels, loss_fn), loss_fn(model(batch).float(), labels))
    weighted = build(small, proto_weight=0.5, dropout=0.0)
    weighted.load_state_dict(model.state_dict(), strict=False)
    expected = loss_fn(weighted(batch).float(), labels) + 0.5 * weighted.class_prototype_loss(
        weighted.represent(batch), weighted.item_vectors(), labels)
    assert torch.allclose(weighted.training_loss(batch, labels, loss_fn), expected)


def test_spherical_kmeans_finds_two_obvious_clusters():
    import torch

    from plugins.lumicrs.model import spherical_kmeans

    x = torch.tensor([[1.0, 0.05], [1.0, -0.05], [0.98, 0.0], [0.05, 1.0], [-0.05, 1.0], [0.0, 0.97]])
    centres = spherical_kmeans(x, 2, 10, torch.Generator().manual_seed(3))
    nearest = sorted(int(i) for i in (centres @ torch.tensor([[1.0, 0.0], [0.0, 1.0]]).T).argmax(0))
    assert nearest == [0, 1] and torch.allclose(centres.norm(dim=1), torch.ones(2))


def test_lumicrs_trains_end_to_end_with_acfl_and_records_its_details(tmp_path):
    from harness.config import resolve
    from harness.plugin_manager import BUILTIN_PLUGINS, load_plugins
    from harness.runner import execute

    plugins = load_plugins([] if "plugins.lumicrs" in BUILTIN_PLUGINS else ["plugins.lumicrs"], autoload=False)
    [config] = resolve(flags={"model": "lumicrs", "loss": "acfl", "train.epochs": 2},
                       overrides=["dataset.params.train_dialogues=120", "dataset.params.valid_dialogues=20",
                                  "dataset.params.test_dialogues=20", "dataset.params.num_items=60",
                                  "model.params.use_text=false", "model.params.dim=16",
                                  "model.params.num_prototypes=5"])
    record = execute(config, plugins, results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", quiet=True)
    details = record["components"]["model"]["details"]
    assert details["class_prototypes"]["variant"] == "learned" and details["class_prototypes"]["count"] == 5
    assert record["training"]["epochs_run"] == 2
    # the recorded metrics are recomputed here from the run's own top-50 lists (samples.jsonl.gz)
    with gzip.open(tmp_path / "results" / "runs" / record["run_id"] / "samples.jsonl.gz", "rt") as handle:
        standard = [row for row in map(json.loads, handle) if row["setting"] == "standard"]
    metrics = record["metrics"]["rec"]["standard"]
    assert len(standard) == metrics["n_samples"] == 35
    for k in (1, 10, 50):
        hits = sum(row["label"] in row["top"][:k] for row in standard)
        assert metrics[f"recall@{k}"] == pytest.approx(hits / len(standard), abs=1e-12), k
    reciprocal = [1 / (row["top"].index(row["label"]) + 1) if row["label"] in row["top"][:10] else 0.0
                  for row in standard]
    assert metrics["mrr@10"] == pytest.approx(sum(reciprocal) / len(standard), abs=1e-12)
    assert len({tuple(row["top"][:10]) for row in standard}) > 1  # the ranking depends on the context
