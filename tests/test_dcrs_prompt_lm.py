"""`dcrs` with ``backbone: prompt-lm`` (UniCRS test-tiny): the retrieved entities reach every recommendation
input (test-time batches and the recommendation stage's training batches) and a run records them."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from harness.api import RunContext  # noqa: E402
from harness.config import resolve  # noqa: E402
from harness.popularity import compute_statistics  # noqa: E402
from harness.runner import execute  # noqa: E402
from plugins.dcrs.demonstrations import merge_entities  # noqa: E402
from plugins.dcrs.factory import build_dcrs  # noqa: E402
from plugins.unicrs.stages import rec_units  # noqa: E402

TINY = {"backbone": "prompt-lm", "backbone_preset": "test-tiny", "retriever": "bm25", "max_context_entities": 6,
        "pretrain_max_samples": 16, "conv_max_samples": 16, "rec_max_samples": 32, "max_new_tokens": 4}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, plugins):
    from plugins.synthetic import build_synthetic

    dataset = build_synthetic(num_items=60, train_dialogues=60, valid_dialogues=12, test_dialogues=12)
    train = dataset.splits["train"]
    stats = compute_statistics(dataset.num_items, train.dialogues, train.rec_samples)
    return RunContext(dataset, stats, "cpu", 0, tmp_path_factory.mktemp("cache"), {"loss": {"name": "ce"}},
                      plugins.registries)


@pytest.fixture(scope="module")
def model(ctx):
    torch.manual_seed(0)
    return build_dcrs(ctx, **TINY)


def expected(model, split, contexts, entities):
    demos = model.index.for_contexts(split, contexts)
    return [merge_entities(e, model.index.retrieved_entities(row, model.item_entity_ids), 6)
            for e, row in zip(entities, demos.tolist())]


def test_test_batches_carry_the_retrieved_entities(model, ctx):
    valid = ctx.dataset.splits["valid"]
    samples = valid.rec_samples[:8]
    batch = model.make_batch(valid, samples)
    want = expected(model, valid, [(s.dialogue_index, s.turn) for s in samples], [s.context_entities for s in samples])
    got = [row[mask].tolist() for row, mask in zip(batch["entities"], batch["entity_mask"])]
    assert got == want and any(set(w) - set(s.context_entities) for w, s in zip(want, samples))


def test_training_batches_carry_the_same_entities_and_exclude_their_conversation(model, ctx):
    train = ctx.train
    units = rec_units(train, train.rec_samples[:8])
    batch = model.rec_inputs(units)
    want = expected(model, train, [(u.dialogue_index, u.length) for u in units], [u.entities for u in units])
    assert [row[mask].tolist() for row, mask in zip(batch["entities"], batch["entity_mask"])] == want
    demos = model.index.for_contexts(train, [(u.dialogue_index, u.length) for u in units])
    assert all(model.index.pool[p].dialogue_id != train.dialogues[u.dialogue_index].id
               for u, row in zip(units, demos.tolist()) for p in row if p >= 0)


def test_the_other_backbones_parameters_are_refused(ctx):
    with pytest.raises(TypeError, match="backbone 'prompt-lm' has no parameter 'dim'"):
        build_dcrs(ctx, backbone="prompt-lm", dim=8)
    with pytest.raises(TypeError, match="backbone 'hybrid' has no parameter 'backbone_preset'"):
        build_dcrs(ctx, backbone="hybrid", backbone_preset="test-tiny")
    with pytest.raises(ValueError, match="dcrs backbone must be one of"):
        build_dcrs(ctx, backbone="gpt")


def test_a_prompt_lm_run_records_backbone_and_retrieval(tmp_path, plugins):
    overrides = ["dataset.params.train_dialogues=60", "dataset.params.valid_dialogues=12",
                 "dataset.params.test_dialogues=12", "dataset.params.num_items=60",
                 *[f"model.params.{k}={v}" for k, v in TINY.items()]]
    [config] = resolve(flags={"model": "dcrs", "train.epochs": 1, "conv_limit": 2}, overrides=overrides)
    record = execute(config, plugins, results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", quiet=True)
    details = record["components"]["model"]["details"]
    assert details["backbone"] == "prompt-lm" and details["prompt_lm"]["preset"] == "test-tiny"
    assert details["demonstrations"]["retriever"] == "bm25"
    assert details["demonstrations"]["retrieval"]["test"]["seconds_per_1000_queries"] > 0
    assert record["tasks"] == ["conv", "rec"]
