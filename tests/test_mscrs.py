"""MSCRS graphs and fusion: hand-made fixtures for the co-mention and kNN graphs, LightGCN against its
formula, the fusion's invariances (λ = 1, released ReDial), the image view and its file checks, a run."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from harness.api import RunContext
from harness.data import DataError
from harness.popularity import TierThresholds, compute_statistics
from plugins.mscrs import graphs
from plugins.mscrs.model import MSCRS


def test_co_mention_counts_and_threshold():
    sets = [[0, 1, 2], [1, 2], [2, 3], [4]]
    # pairs: (0,1) 1, (0,2) 1, (1,2) 2, (2,3) 1; entity 4 alone
    edges = graphs.co_mention_edges(sets, num_entities=5, threshold=1)
    pairs = {tuple(e) for e in edges.T.tolist()}
    assert pairs == {(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1), (2, 3), (3, 2)}
    strong = graphs.co_mention_edges(sets, num_entities=5, threshold=2)
    assert {tuple(e) for e in strong.T.tolist()} == {(1, 2), (2, 1)}


def test_knn_edges_keep_the_k_most_similar_positive_neighbours():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    edges = graphs.knn_edges(x, k=2)
    neighbours = {i: sorted(edges[1][edges[0] == i].tolist()) for i in range(4)}
    # item 0: cos with 1 ≈ 0.994, with 2 = 0, with 3 = -1 -> only item 1 is positive
    assert neighbours[0] == [1]
    assert neighbours[1] == [0, 2]  # cos(1,2) ≈ 0.11 > 0
    assert neighbours[2] == [1]  # cos(2,0) = 0, cos(2,3) = 0: not positive
    assert neighbours[3] == []  # every similarity is <= 0
    for i, found in neighbours.items():  # min(k, #positive similarities)
        positive = sum(1 for j in range(4) if j != i and float(x[i] @ x[j]) / (np.linalg.norm(x[i]) * np.linalg.norm(x[j])) > 1e-9)
        assert len(found) == min(2, positive)


def test_knn_edges_match_brute_force_in_chunks():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    edges = graphs.knn_edges(x, k=5, chunk=7)
    norm = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = norm @ norm.T
    np.fill_diagonal(sims, -np.inf)
    for i in range(50):
        expected = {j for j in np.argsort(-sims[i])[:5] if sims[i, j] > 0}
        assert set(edges[1][edges[0] == i].tolist()) == expected


def test_lgconv_equals_the_symmetric_normalised_formula():
    from torch_geometric.nn import LGConv

    undirected = [(0, 1), (1, 2), (2, 3), (0, 2)]
    edges = torch.tensor([[a for a, b in undirected] + [b for a, b in undirected],
                          [b for a, b in undirected] + [a for a, b in undirected]])
    x = torch.randn(4, 3)
    adjacency = torch.zeros(4, 4)
    adjacency[edges[0], edges[1]] = 1.0
    degree = adjacency.sum(1)
    expected = torch.diag(degree.rsqrt()) @ adjacency @ torch.diag(degree.rsqrt()) @ x
    assert torch.allclose(LGConv(normalize=True)(x, edges), expected, atol=1e-6)


def test_item_features_are_validated_with_path_and_problem(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.ones((3, 4), dtype=np.float32))
    assert graphs.load_item_features(good, 3).shape == (3, 4)
    wrong = tmp_path / "rows.npy"
    np.save(wrong, np.ones((2, 4)))
    with pytest.raises(DataError, match=r"rows\.npy: item features must be a \[3, d\] matrix .* got shape \[2, 4\]"):
        graphs.load_item_features(wrong, 3)
    nan = tmp_path / "nan.npy"
    matrix = np.ones((3, 4))
    matrix[1, 2] = np.nan
    np.save(nan, matrix)
    with pytest.raises(DataError, match=r"nan\.npy: item features must be finite numbers \(row 1 is not\)"):
        graphs.load_item_features(nan, 3)
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not numpy")
    with pytest.raises(DataError, match=r"junk\.npy: not a readable \.npy matrix"):
        graphs.load_item_features(junk, 3)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One text-embedding cache for the module: the item texts are encoded once, not per model."""
    return tmp_path_factory.mktemp("mscrs-cache")


def tiny_context(synthetic, cache, name: str | None = None) -> RunContext:
    dataset = synthetic if name is None else replace(synthetic, name=name)
    train = dataset.splits["train"]
    stats = compute_statistics(dataset.num_items, train.dialogues, train.rec_samples, TierThresholds())
    return RunContext(dataset, stats, "cpu", 0, cache, {}, None)


def build(ctx, **params) -> MSCRS:
    torch.manual_seed(0)
    return MSCRS(ctx, dim=16, max_tokens=64, **params).eval()


def image_file(tmp_path, synthetic, seed: int):
    path = tmp_path / f"image-{seed}.npy"
    np.save(path, np.random.default_rng(seed).normal(size=(synthetic.num_items, 6)).astype(np.float32))
    return str(path)


def test_the_image_view_turns_on_with_a_feature_file(synthetic, tmp_path, shared_cache):
    ctx = tiny_context(synthetic, shared_cache)
    without = build(ctx)
    assert without.image_edges is None and without.describe()["image_view"].startswith("off: no image_features")
    with_image = build(ctx, image_features=image_file(tmp_path, synthetic, 1))
    assert with_image.describe()["image_view"] == "on" and with_image.describe()["image_edges"] > 0
    assert not torch.allclose(without.entity_vectors(), with_image.entity_vectors())


def test_lambda_one_ignores_the_image_features(synthetic, tmp_path, shared_cache):
    ctx = tiny_context(synthetic, shared_cache)
    a = build(ctx, lam=1.0, image_features=image_file(tmp_path, synthetic, 1)).entity_vectors()
    b = build(ctx, lam=1.0, image_features=image_file(tmp_path, synthetic, 2)).entity_vectors()
    assert torch.allclose(a, b)
    c = build(ctx, lam=0.5, image_features=image_file(tmp_path, synthetic, 2)).entity_vectors()
    assert not torch.allclose(a, c)


def test_released_redial_ignores_text_and_image(synthetic, tmp_path, shared_cache):
    ctx = tiny_context(synthetic, shared_cache, name="redial")
    with_views = build(ctx, preset="released", image_features=image_file(tmp_path, synthetic, 1))
    without = build(ctx, preset="released", use_text_graph=False, use_image=False)
    assert with_views.describe()["modal_views_added"] is False
    assert torch.allclose(with_views.entity_vectors(), without.entity_vectors())


def test_ablations_remove_their_graph(synthetic, tmp_path, shared_cache):
    ctx = tiny_context(synthetic, shared_cache)
    full = build(ctx)
    assert full.collab_edges is not None and full.text_edges is not None
    bare = build(ctx, use_collab=False, use_text_graph=False, use_image=False)
    assert bare.collab_edges is None and bare.text_edges is None
    n1 = torch.cat([bare.kg_encoder(), torch.zeros(1, 16)])
    assert torch.allclose(bare.entity_vectors(), n1)  # all graphs off: the hybrid's R-GCN table


def test_fuse_loss_trains_and_gradients_reach_every_graph_input(synthetic, tmp_path, shared_cache):
    ctx = tiny_context(synthetic, shared_cache)
    model = build(ctx, fuse_weight=1.0).train()
    samples = synthetic.splits["train"].rec_samples[:32]
    batch = model.make_batch(synthetic.splits["train"], samples)
    labels = torch.tensor([s.label for s in samples])
    loss = model.training_loss(batch, labels, torch.nn.CrossEntropyLoss())
    assert torch.isfinite(loss)
    loss.backward()
    assert model.kg_encoder.embedding.weight.grad.abs().sum() > 0
    assert model.text_proj.weight.grad.abs().sum() > 0


def test_a_run_records_graph_sizes(run_bench, tmp_path):
    code, out, err = run_bench("run", "--model", "mscrs", "--epochs", "1", "--quiet",
                               "--set", "dataset.params.num_items=80", "--set", "dataset.params.train_dialogues=120",
                               "--set", "model.params.dim=16")
    assert code == 0, err
    [path] = (tmp_path / "results" / "runs").glob("*/record.json")
    details = json.loads(path.read_text())["components"]["model"]["details"]
    assert details["preset"] == "paper" and details["collab_edges"] > 0 and details["text_edges"] > 0
    assert details["image_view"].startswith("off") and details["item_text"]["template"] == graphs.ITEM_TEXT_TEMPLATE


def test_a_malformed_image_file_is_a_one_line_error(run_bench, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones((3, 2)))
    code, out, err = run_bench("run", "--model", "mscrs", "--epochs", "1", "--quiet",
                               "--set", f"model.params.image_features={bad}")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{bad}: item features must be a [300, d] matrix" in err


# ------------------------------------------------------------------------------- the prompt-lm backbone

PROMPT_SMALL = ["dataset.params.train_dialogues=60", "dataset.params.valid_dialogues=12",
                "dataset.params.test_dialogues=12", "dataset.params.num_items=60", "model.params.backbone=prompt-lm",
                "model.params.prompt_preset=test-tiny", "model.params.pretrain_max_samples=32",
                "model.params.conv_max_samples=32", "model.params.rec_max_samples=48", "model.params.max_new_tokens=6"]


def build_prompt_lm(ctx, **params):
    from plugins.mscrs.model import build_mscrs

    torch.manual_seed(0)
    return build_mscrs(ctx, backbone="prompt-lm", prompt_preset="test-tiny", **params).eval()


@pytest.fixture(scope="module")
def prompt_ctx(shared_cache):
    from plugins.synthetic import build_synthetic

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: a second thread only waits
    dataset = build_synthetic(num_items=60, train_dialogues=60, valid_dialogues=12, test_dialogues=12)
    train = dataset.splits["train"]
    yield RunContext(dataset, compute_statistics(dataset.num_items, train.dialogues, train.rec_samples), "cpu", 0,
                     shared_cache, {"loss": {"name": "ce"}})
    torch.set_num_threads(previous)


def test_on_prompt_lm_the_fused_table_is_kgprompts_entity_table(prompt_ctx):
    bare = build_prompt_lm(prompt_ctx, use_collab=False, use_text_graph=False, use_image=False)
    for copy in ("rec", "conv"):  # all graphs off: exactly UniCRS's H = N1 + MLP_e(N1)
        assert torch.allclose(bare.entity_vectors(copy), bare.prompts[copy].entity_states())
    full = build_prompt_lm(prompt_ctx)
    details = full.describe()
    assert details["backbone"] == "prompt-lm" and details["collab_edges"] > 0 and details["text_edges"] > 0
    prompt = full.prompts["rec"]
    n1 = prompt.kg_encoder()
    expected = prompt.entity_mlp(full.fused_table(n1, prompt.kg_encoder.embedding.weight))
    assert torch.allclose(full.entity_vectors("rec")[:-1], expected)
    assert not torch.allclose(full.entity_vectors("rec"), prompt.entity_states())


def test_on_prompt_lm_the_fuse_loss_trains_kgprompt_through_the_graphs(prompt_ctx):
    train = prompt_ctx.dataset.splits["train"]
    samples = train.rec_samples[:16]
    labels = torch.tensor([s.label for s in samples])
    losses = {}
    for weight in (0.0, 1.0):
        model = build_prompt_lm(prompt_ctx, fuse_weight=weight).train()
        loss = model.training_loss(model.make_batch(train, samples), labels, torch.nn.CrossEntropyLoss())
        loss.backward()
        losses[weight] = loss.item()
        assert model.prompts["rec"].kg_encoder.embedding.weight.grad.abs().sum() > 0
    assert losses[1.0] > losses[0.0]  # L_fuse > 0 is added (same seed, same batch)


def test_a_hybrid_parameter_is_refused_on_prompt_lm(prompt_ctx):
    with pytest.raises(TypeError, match="mscrs backbone 'prompt-lm' has no parameter 'dim'"):
        build_prompt_lm(prompt_ctx, dim=32)
    with pytest.raises(TypeError, match="mscrs backbone 'hybrid' has no parameter 'prompt_preset'"):
        from plugins.mscrs.model import build_mscrs

        build_mscrs(prompt_ctx, backbone="hybrid", prompt_preset="cpu")


def test_bench_run_mscrs_on_prompt_lm_recommends_speaks_and_is_labelled(run_bench, tmp_path):
    from harness.leaderboard import build_tables

    code, out, err = run_bench("run", "--model", "mscrs", "--conv-limit", "2", "--epochs", "1", "--quiet",
                               *[arg for setting in PROMPT_SMALL for arg in ("--set", setting)])
    assert code == 0, err
    [path] = (tmp_path / "results" / "runs").glob("*/record.json")
    record = json.loads(path.read_text())
    details = record["components"]["model"]["details"]
    assert details["backbone"] == "prompt-lm" and details["prompt_lm"]["preset"] == "test-tiny"
    assert details["collab_edges"] > 0 and set(record["training"]["stages"]) == {"pretrain", "conv", "rec"}
    assert record["tasks"] == ["conv", "rec"]
    assert {row.label["model"] for table in build_tables([(None, record)]) for row in table.rows} == {"mscrs (prompt-lm)"}
