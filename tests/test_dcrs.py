"""DCRS: the demonstration pool and its leakage rules, the retrievers it uses (bm25, random, simcse), the
entity truncation that keeps retrieved entities, demonstrations changing the hybrid model's scores, and runs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from harness.api import RunContext
from harness.popularity import compute_statistics
from harness.testing import check_model, check_retriever
from plugins.dcrs.demonstrations import DemonstrationIndex, merge_entities, rec_pool, resolve_retriever
from plugins.dcrs.model import DCRS

SMALL = {"dim": 16, "max_tokens": 64}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module: the sentence encoder embeds each text once."""
    return tmp_path_factory.mktemp("dcrs-cache")


@pytest.fixture(scope="module")
def ctx(synthetic, plugins, cache) -> RunContext:
    train = synthetic.splits["train"]
    stats = compute_statistics(synthetic.num_items, train.dialogues, train.rec_samples)
    return RunContext(synthetic, stats, "cpu", 0, cache, {}, plugins.registries)


def index(ctx, retriever: str, m: int = 3, **params) -> DemonstrationIndex:
    return DemonstrationIndex(ctx, rec_pool(ctx.train), retriever, params, m, "rec")


def build(ctx, **params) -> DCRS:
    torch.manual_seed(0)
    return DCRS(ctx, **{**SMALL, **params})


# ------------------------------------------------------------------------------------------ pool, leakage


def test_the_pool_is_the_training_split_only(ctx, synthetic):
    pool = rec_pool(ctx.train)
    train_ids = {d.id for d in synthetic.splits["train"].dialogues}
    other = {d.id for name in ("valid", "test") for d in synthetic.splits[name].dialogues}
    assert pool and {e.dialogue_id for e in pool} <= train_ids and not {e.dialogue_id for e in pool} & other
    turns = {(s.dialogue_index, s.turn) for s in ctx.train.rec_samples}
    assert len(pool) == len(turns)  # one entry per training recommender turn with labels
    for entry in pool:  # labelled items are that turn's labels
        labels = {s.label for s in ctx.train.rec_samples if (s.dialogue_index, s.turn) == (entry.dialogue_index, entry.turn)}
        assert set(entry.items) == labels


@pytest.mark.parametrize("retriever", ["dense", "bm25", "random"])
def test_a_training_query_never_retrieves_its_own_conversation(ctx, retriever):
    found = index(ctx, retriever, m=8).for_samples(ctx.train, ctx.train.rec_samples)
    pool = rec_pool(ctx.train)
    own = [[pool[i].dialogue_id == ctx.train.dialogues[s.dialogue_index].id for i in row if i >= 0]
           for s, row in zip(ctx.train.rec_samples, found)]
    assert found.shape == (len(ctx.train.rec_samples), 8) and (found >= 0).all()
    assert not any(any(row) for row in own)


def test_without_the_exclusion_dense_would_find_the_query_itself(ctx):
    """The rule is not vacuous: each training context's own pool entry is its best match (cosine 1)."""
    demos = index(ctx, "dense", m=1)
    demos._ensure_index()
    samples = ctx.train.rec_samples[:10]
    texts = [demos.text(ctx.train.context(s), s.context_entities) for s in samples]
    _, scores = demos.retriever.search(texts, 1)
    pool = rec_pool(ctx.train)
    own = [next(i for i, e in enumerate(pool) if (e.dialogue_index, e.turn) == (s.dialogue_index, s.turn))
           for s in samples]
    vectors = demos.retriever.encoder.encode(texts)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    own_scores = (vectors * demos.retriever.vectors[own]).sum(1)
    assert np.allclose(own_scores, 1.0, atol=1e-4) and np.allclose(scores[:, 0], own_scores, atol=1e-4)


def test_valid_and_test_queries_search_the_training_pool(ctx, synthetic):
    demos = index(ctx, "bm25")
    for name in ("valid", "test"):
        split = synthetic.splits[name]
        found = demos.for_samples(split, split.rec_samples)
        assert ((found >= 0) & (found < len(demos.pool))).all()
    assert set(demos.timings) == {"valid", "test"} and all(t["seconds_per_1000_queries"] > 0
                                                           for t in demos.timings.values())


def test_one_search_per_split_and_the_disk_cache(ctx, synthetic):
    valid = synthetic.splits["valid"]
    first = index(ctx, "bm25", m=2)
    calls = []
    search = first.retriever.search
    first.retriever.search = lambda *a, **k: calls.append(1) or search(*a, **k)
    a = first.for_samples(valid, valid.rec_samples[:3], valid.rec_samples)
    b = first.for_samples(valid, valid.rec_samples[3:9], valid.rec_samples)
    assert len(calls) == 1 and a.shape == (3, 2) and b.shape == (6, 2)
    again = index(ctx, "bm25", m=2)  # a new run: read from the cache, the retriever is never indexed
    assert np.array_equal(again.for_samples(valid, valid.rec_samples[:3], valid.rec_samples), a)
    assert not again.indexed and again.timings["valid"]["cached"]


def test_random_is_seeded_and_differs_from_dense(ctx, synthetic):
    valid = synthetic.splits["valid"]
    random_ = index(ctx, "random").for_samples(valid, valid.rec_samples)
    assert np.array_equal(random_, index(ctx, "random").for_samples(valid, valid.rec_samples))
    other_seed = RunContext(ctx.dataset, ctx.stats, "cpu", 1, ctx.cache_dir, {}, ctx.registries)
    assert not np.array_equal(random_, index(other_seed, "random").for_samples(valid, valid.rec_samples))
    dense = index(ctx, "dense").for_samples(valid, valid.rec_samples)
    assert (random_ != dense).any(axis=1).mean() > 0.8  # nearly every context gets other demonstrations


# ------------------------------------------------------------------------------------------ entities


def test_truncation_keeps_the_retrieved_entities():
    context, retrieved = list(range(10)), [50, 3, 51, 50, 52]
    merged = merge_entities(context, retrieved, limit=6)
    assert merged == [6, 7, 8, 9, 50, 51, 52][-6:]  # 3 is already in the context; duplicates dropped
    assert {50, 51, 52} <= set(merged) and len(merged) == 6
    assert merge_entities(context, list(range(100, 120)), limit=8) == list(range(112, 120))  # all retrieved
    assert merge_entities([1, 2], [], limit=32) == [1, 2] and merge_entities([1], [2], limit=0) == []


def test_demo_entities_reach_the_batch(ctx, synthetic):
    model = build(ctx, retriever="bm25", demo_entities=True, max_context_entities=4)
    valid = synthetic.splits["valid"]
    samples = valid.rec_samples[:8]
    batch = model.make_batch(valid, samples)
    demos = model.index.for_samples(valid, samples)
    for row, (sample, found) in enumerate(zip(samples, demos.tolist())):
        kept = batch["entities"][row][batch["mask"][row]].tolist()
        assert kept == merge_entities(sample.context_entities, model.retrieved_entities(found), 4)


# ------------------------------------------------------------------------------------------ the model


def test_scores_change_when_demonstrations_are_removed(ctx, synthetic):
    model = build(ctx, retriever="dense")
    loss = ctx.registries.losses.get("ce").build(ctx)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    train = ctx.train
    model.train()
    for start in range(0, 96, 32):  # a few steps: W_o starts at zero (the untrained model is the hybrid)
        samples = train.rec_samples[start:start + 32]
        value = model.training_loss(model.make_batch(train, samples),
                                    torch.tensor([s.label for s in samples]), loss)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    model.eval()
    valid = synthetic.splits["valid"]
    batch = model.make_batch(valid, valid.rec_samples[:16])
    with torch.no_grad():
        full = model.scores(batch)
        removed = model.scores({**batch, "demo_mask": torch.zeros_like(batch["demo_mask"])})
        other = model.scores({**batch, "demos": batch["demos"].flip(0)})
    assert not torch.allclose(full, removed, atol=1e-5)
    assert not torch.allclose(full, other, atol=1e-5)  # which demonstrations matters, not only their presence


def test_untrained_model_equals_the_hybrid(ctx, synthetic):
    from plugins.models.hybrid import Hybrid

    model = build(ctx, retriever="random").eval()
    valid = synthetic.splits["valid"]
    with torch.no_grad():
        batch = model.make_batch(valid, valid.rec_samples[:8])
        u = model.represent(batch)
        assert torch.allclose(u, Hybrid.represent(model, batch))  # W_o = 0: no contribution yet


def test_presets_and_bad_settings():
    assert resolve_retriever("paper", "rec", None) == "simcse" and resolve_retriever("paper", "conv", None) == "simcse"
    assert resolve_retriever("released", "rec", None) == "random"
    assert resolve_retriever("released", "conv", None) == "bm25"
    assert resolve_retriever("released", "rec", "dense") == "dense"
    with pytest.raises(ValueError, match="dcrs preset must be one of"):
        resolve_retriever("fancy", "rec", None)


def test_bad_retriever_and_demonstration_count_are_one_line_errors(ctx):
    with pytest.raises(ValueError, match="dcrs retriever must be one of"):
        index(ctx, "tfidf")
    with pytest.raises(ValueError, match=r"m >= 1"):
        index(ctx, "bm25", m=0)
    with pytest.raises(ValueError, match=r"retriever 'bm25' has no parameter 'k3' \(accepted: b, k1"):
        index(ctx, "bm25", k3=1)


# ------------------------------------------------------------------------------------------ retrievers, runs


@pytest.mark.parametrize("name,params", [("bm25", {}), ("random", {}),
                                         ("simcse", {"steps": 2, "batch_size": 4, "max_tokens": 32})])
def test_retrievers_conform(name, params):
    result = check_retriever(name, params)
    assert "never returns an excluded id" in result.rules


def test_bm25_exclusion_matches_a_search_without_the_excluded_documents():
    from plugins.retrieval_bm25 import BM25Retriever

    corpus = ["space cats movie", "a movie about space", "cats and dogs", "space space space", "romance", "dogs"]
    retriever = BM25Retriever()
    retriever.index(corpus)
    ids, scores = retriever.search(["space movie", "dogs"], 3, exclude=[[3, 1], [5]])
    assert ids[0].tolist()[:1] == [0] and 3 not in ids[0] and 1 not in ids[0]
    assert ids[1].tolist()[0] == 2 and 5 not in ids[1]
    assert (np.diff(scores, axis=1) <= 0).all()


def test_simcse_trains_once_per_corpus(ctx, tmp_path):
    from plugins.retrieval_simcse import SimCSERetriever

    local = RunContext(ctx.dataset, ctx.stats, "cpu", 0, tmp_path, {}, ctx.registries)
    corpus = [" ".join(t.text for t in d.turns[:3]) for d in ctx.train.dialogues[:20]]
    first = SimCSERetriever(local, "all-MiniLM-L6-v2", 32, 3, 4, 1e-4, 0.05, 0)
    first.index(corpus)
    assert first.training["steps"] == 3 and np.isfinite(first.training["last_loss"])
    frozen = ctx.registries.retrievers.get("dense").build(local, max_tokens=32)
    frozen.index(corpus)
    assert not np.allclose(first.vectors, frozen.vectors, atol=1e-4)  # fine-tuning moved the encoder
    second = SimCSERetriever(local, "all-MiniLM-L6-v2", 32, 3, 4, 1e-4, 0.05, 0)
    second.index(corpus)
    assert second.training == first.training and np.allclose(second.vectors, first.vectors, atol=1e-5)
    assert len(list((tmp_path / "simcse").iterdir())) == 1


def test_dcrs_conforms_and_records_retrieval_time():
    result = check_model("dcrs", {**SMALL, "retriever": "bm25"})
    details = result.record["components"]["model"]["details"]
    assert details["demonstrations"]["retriever"] == "bm25" and details["backbone"] == "hybrid"
    timings = details["demonstrations"]["retrieval"]
    assert {"train", "valid", "test"} <= set(timings)
    assert all(t["seconds_per_1000_queries"] > 0 for t in timings.values())
    json.dumps(details)


def test_a_tiny_run_from_the_cli(run_bench, tmp_path):
    code, out, err = run_bench("run", "--model", "dcrs", "--epochs", "1", "--quiet",
                               "--set", "model.params.preset=released", "--set", "model.params.dim=16",
                               "--set", "model.params.max_tokens=64")
    assert code == 0, err
    records = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*/record.json")]
    assert len(records) == 1
    record, details = records[0], records[0]["components"]["model"]["details"]
    assert details["preset"] == "released" and details["demonstrations"]["retriever"] == "random"
    assert 0.0 <= record["metrics"]["rec"]["standard"]["recall@10"] <= 1.0


def test_top_k_is_exact_with_many_ties_and_minus_infinity():
    from plugins.retrievers import top_k

    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=(200, 30)).astype(np.float32)  # heavy ties at every boundary
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    scores[0] = -np.inf
    for k in (1, 3, 29, 40):
        ids, values = top_k(scores, k)
        for row in range(len(scores)):
            ranked = sorted((-s, j) for j, s in enumerate(scores[row]) if np.isfinite(s))[:k]
            want = [j for _, j in ranked] + [-1] * (k - len(ranked))
            assert ids[row].tolist() == want
            assert np.array_equal(values[row][:len(ranked)], [-s for s, _ in ranked])
