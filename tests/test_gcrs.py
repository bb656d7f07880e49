"""GCRS (issue 17) on the `test-tiny` preset: unique semantic IDs after collision resolution, the trie and its
LogitsProcessor, constrained beam search against exact full-catalogue scoring, teacher-forced SID
log-probabilities, free versus oracle mode, only the new vocabulary rows training, and an end-to-end run of
`gcrs` on `synthetic` through the conformance kit."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from harness.api import RunContext  # noqa: E402
from harness.popularity import compute_statistics  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    from plugins.synthetic import build_synthetic

    dataset = build_synthetic(num_items=60, train_dialogues=40, valid_dialogues=10, test_dialogues=10)
    train = dataset.splits["train"]
    stats = compute_statistics(dataset.num_items, train.dialogues, train.rec_samples)
    return RunContext(dataset, stats, "cpu", 0, tmp_path_factory.mktemp("cache"), {"loss": {"name": "ce"}})


@pytest.fixture(scope="module")
def model(ctx):
    from plugins.gcrs.model import GCRS

    built = GCRS(ctx, preset="test-tiny")
    built.eval()
    return built


def prompts_of(model, split, count=3):
    return model.make_batch(split, split.rec_samples[:count])["prompts"]


# ------------------------------------------------------------------------------------ semantic IDs


def test_identical_embeddings_get_distinct_ids_after_collision_resolution():
    from plugins.gcrs.presets import PRESETS
    from plugins.gcrs.semantic_ids import build_table

    rng = np.random.default_rng(0)
    distinct = rng.normal(size=(30, 24)).astype(np.float32)
    embeddings = np.concatenate([distinct, np.repeat(distinct[:2], 20, axis=0)])  # 40 copies of two items
    codes, stats = build_table(embeddings, {**PRESETS["test-tiny"], "rq_epochs": 20})
    assert stats["collision_rate_before"] > 0.3  # identical vectors share a tuple before resolution
    assert len({tuple(row) for row in codes.tolist()}) == len(embeddings)
    assert stats["collision_rate_after"] == 0.0 and stats["resolution"]["items_moved"] >= 38
    assert codes.min() >= 0 and codes.max() < PRESETS["test-tiny"]["codebook_size"]


def test_too_few_ids_for_the_catalogue_is_a_one_line_error():
    from plugins.gcrs.rqvae import resolve_collisions

    with pytest.raises(ValueError, match="cannot give 10 items distinct IDs"):
        resolve_collisions(torch.zeros(10, 1, dtype=torch.long), torch.zeros(10, 1, 2), torch.zeros(1, 3, 2))


def test_ids_are_cached_per_dataset_fingerprint(ctx, model):
    from plugins.gcrs.semantic_ids import load_or_build

    codes, stats = load_or_build(ctx.dataset, model.settings, Path(ctx.cache_dir))
    assert stats["cache"] == "hit" and np.array_equal(codes, model.codes)


def test_the_trie_admits_exactly_the_catalogue_ids(model):
    trie, vocab = model.trie, model.vocab
    tokens = trie.codes + torch.tensor([vocab.level_start(level) for level in range(trie.levels)])
    assert torch.equal(trie.items_of(tokens), torch.arange(model.num_items))
    known = {tuple(row) for row in trie.codes.tolist()}
    others = [row for row in np.ndindex(*(trie.size,) * trie.levels) if row not in known][:50]
    other_tokens = torch.tensor(others) + tokens[0] - trie.codes[0]
    assert (trie.items_of(other_tokens) == -1).all()
    assert trie.counts()[-1] == model.num_items


# ------------------------------------------------------------------------------------------- decoding


def test_constrained_beam_decodes_only_catalogue_items_without_duplicates(ctx, model):
    from plugins.gcrs.decoding import beam_search, prefill

    split = ctx.dataset.splits["valid"]
    with torch.no_grad():
        for width in (1, 7, model.num_items + 13):  # one beam, and narrower and wider than the catalogue
            ids, mask, _, cache = prefill(model.lm, prompts_of(model, split), model.pad_id, "cpu")
            items, values = beam_search(model.lm, model.trie, ids, mask, cache, width, False, model.pad_id)
            for row_items, row_values in zip(items.tolist(), values.tolist()):
                kept = [item for item, value in zip(row_items, row_values) if np.isfinite(value)]
                assert kept and all(0 <= item < model.num_items for item in kept)
                assert len(kept) == len(set(kept)) == min(width, model.num_items)


def test_beam_top_b_equals_exact_top_b_when_the_beam_covers_every_level(ctx, model):
    split = ctx.dataset.splits["valid"]
    batch = model.make_batch(split, split.rec_samples[:3])
    saved = dict(model.settings), model.beam_width
    try:
        model.beam_width = model.num_items  # >= the valid children of every level: the search is exhaustive
        model.settings["ranking"] = "beam"
        beam = model.scores(batch)
        model.settings["ranking"] = "exact"
        exact = model.scores(batch)
    finally:
        model.settings.update(saved[0])
        model.beam_width = saved[1]
    assert torch.isfinite(exact).all() and torch.isfinite(beam).all()
    torch.testing.assert_close(beam, exact, atol=1e-4, rtol=0)
    b = 10
    for row_beam, row_exact in zip(beam, exact):
        top_beam, top_exact = row_beam.topk(b), row_exact.topk(b)
        torch.testing.assert_close(top_beam.values, top_exact.values, atol=1e-4, rtol=0)
        gap = float(top_exact.values[-1] - row_exact.sort(descending=True).values[b])
        if gap > 1e-4:  # no tie at the boundary: the same set of items
            assert set(top_beam.indices.tolist()) == set(top_exact.indices.tolist())


def test_exact_scores_equal_teacher_forced_sid_log_probabilities(ctx, model):
    from plugins.generators.lm import target_logits

    split = ctx.dataset.splits["valid"]
    batch = model.make_batch(split, split.rec_samples[:2])
    saved = model.settings["ranking"]
    model.settings["ranking"] = "exact"
    try:
        exact = model.scores(batch)
    finally:
        model.settings["ranking"] = saved
    vocab = model.vocab
    for row, prompt in enumerate(batch["prompts"]):
        for item in (0, 17, model.num_items - 1):
            span = model.serializer.span(item)[1:-1]  # the L code tokens
            with torch.no_grad():
                logits, labels = target_logits(model.lm, [prompt + [vocab.rec, vocab.boi]], [span], model.pad_id,
                                               "cpu")
            forced = torch.log_softmax(logits[0], -1).gather(1, labels[0][:, None]).sum()
            assert float(exact[row, item]) == pytest.approx(float(forced), abs=1e-4)


def test_processor_never_leaves_an_empty_allowed_set_and_closes_spans(model):
    from plugins.gcrs.decoding import SidTrieProcessor

    vocab, trie = model.vocab, model.trie
    scores = torch.zeros(3, len(model.tokenizer))
    first = int(trie.codes[5, 0])
    ids = torch.tensor([[1, vocab.boi, vocab.level_start(0) + first],  # inside a span, one code so far
                        [1, 2, 3],  # outside any span
                        [1, vocab.boi, *(model.serializer.span(5)[1:-1])][:3]])
    out = SidTrieProcessor(trie, 0)(ids, scores)
    allowed = torch.isfinite(out)
    assert allowed.any(1).all()
    level1 = allowed[0, vocab.level_start(1):vocab.level_start(1) + trie.size].nonzero().squeeze(1)
    expected = sorted({int(c[1]) for c in trie.codes if int(c[0]) == first})
    assert level1.tolist() == expected and allowed[0].sum() == len(expected)
    new = slice(vocab.first, vocab.first + vocab.count)
    assert allowed[1, new].nonzero().squeeze(1).tolist() == [vocab.boi - vocab.first]
    assert allowed[1, :vocab.first].all()


# ------------------------------------------------------------------------------------ modes and text


def test_free_and_oracle_mode_agree_when_the_model_always_emits_the_oracle_mode(ctx, model):
    from harness.evaluation import rank_split
    from plugins.gcrs.evaluation import evaluate_test

    head = model.lm.get_output_embeddings()
    hook = head.register_forward_hook(lambda module, args, out: out.index_add(
        -1, torch.tensor([model.vocab.rec]), torch.full(out.shape[:-1] + (1,), 50.0)))
    try:
        model.modes = []
        split = ctx.dataset.splits["test"]
        lists = rank_split(model, split, 64)
        run = SimpleNamespace(model=model, config={"conv_limit": 12, "train": {"eval_batch_size": 64}})
        result = evaluate_test(run, split, lists, torch.cat(model.modes))
    finally:
        hook.remove()
    assert result["rec_contexts_predicted_rec"] == 1.0
    for setting in ("standard", "novel"):
        assert result["ranking"][setting]["free"] == result["ranking"][setting]["oracle"]
    assert result["mode"]["recall_rec"] == 1.0 and result["mode"]["predicted_rec_share"] == 1.0
    assert result["perplexity"] is not None and result["perplexity"] > 1.0


def test_sid_spans_render_as_titles(model):
    from harness.api import item_name

    tokens = model.serializer.text("Try ") + model.serializer.span(3) + model.serializer.text(" now")
    text = model.render(tokens + [model.tokenizer.eos_token_id] + model.serializer.text(" ignored"))
    assert item_name(model.titles[3]) in text and "ignored" not in text and "<" not in text


def test_only_lora_and_the_new_vocabulary_rows_train(ctx, model):
    from plugins.gcrs.model import GCRS

    fresh = GCRS(ctx, preset="test-tiny")
    names = [name for name, p in fresh.named_parameters() if p.requires_grad]
    assert names and all("lora_" in name or "trainable_tokens" in name for name in names)
    embed = fresh.lm.get_input_embeddings()
    before = embed(torch.arange(len(fresh.tokenizer))[None])[0].detach().clone()
    optimizer = torch.optim.SGD([p for p in fresh.parameters() if p.requires_grad], lr=1.0)
    split = ctx.dataset.splits["train"]
    batch = fresh.make_batch(split, split.rec_samples[:4])
    labels = torch.tensor([s.label for s in split.rec_samples[:4]])
    fresh.training_loss(batch, labels, None).backward()
    optimizer.step()
    after = embed(torch.arange(len(fresh.tokenizer))[None])[0].detach()
    changed = (after - before).abs().sum(1) > 0
    assert not changed[:fresh.vocab.first].any() and changed[fresh.vocab.first:].any()


def test_settings_are_checked(ctx):
    from plugins.gcrs.model import GCRS

    with pytest.raises(ValueError, match="gcrs ranking must be one of"):
        GCRS(ctx, preset="test-tiny", ranking="greedy")
    with pytest.raises(TypeError, match="gcrs has no parameter 'beam'"):
        GCRS(ctx, preset="test-tiny", beam=3)
    with pytest.raises(ValueError, match="loss 'focal' would be ignored"):
        GCRS(RunContext(ctx.dataset, ctx.stats, "cpu", 0, ctx.cache_dir, {"loss": {"name": "focal"}}),
             preset="test-tiny")


# ------------------------------------------------------------------------------------------ end to end


def test_gcrs_runs_end_to_end_on_synthetic_through_the_conformance_kit(plugins):
    from harness.testing import check_model

    result = check_model("gcrs", {"preset": "test-tiny"}, plugins=plugins)
    record = result.record
    details = record["components"]["model"]["details"]
    assert record["training"]["trained"] and record["training"]["steps"] > 0
    assert details["semantic_ids"]["collision_rate_after"] == 0.0
    assert len(details["semantic_ids"]["codebook_usage_per_level"]) == details["settings"]["levels"]
    evaluation = details["evaluation"]
    assert 0.0 <= evaluation["mode"]["accuracy"] <= 1.0 and "f1_rec" in evaluation["mode"]
    assert set(evaluation["ranking"]) == {"standard", "novel"}
    assert evaluation["ranking"]["standard"]["oracle"]["recall@10"] == pytest.approx(
        record["metrics"]["rec"]["standard"]["recall@10"])


def test_generate_writes_one_line_per_sample_with_spans_as_titles(ctx, model):
    from harness.conversation import contexts_only

    test = ctx.dataset.splits["test"]
    split, samples = contexts_only(test, test.conv_samples[:5])
    recommendations = np.tile(np.arange(10), (len(samples), 1))
    responses = model.generate(split, samples, recommendations)
    assert len(responses) == len(samples) and all(isinstance(r, str) and "\n" not in r for r in responses)
    assert not any("<BOI>" in r or "<MODE" in r for r in responses)


def test_an_interrupted_training_resumes_after_its_last_epoch_as_if_uninterrupted(tmp_path):
    """`--resume` continues GCRS's own training stage from its per-epoch checkpoint (adapter, optimizer,
    schedule, RNG of the LoRA dropout, best epoch): the resumed run equals the uninterrupted one."""
    from harness import hookimpl
    from harness.config import resolve
    from harness.plugin_manager import load_plugins
    from harness.runner import execute

    [config] = resolve(flags={"model": "gcrs", "train.epochs": 3, "limit": 24},
                       overrides=["model.params.preset=test-tiny", "model.params.epochs=3"])

    seen: list[tuple[str, int]] = []

    def run(name, resume=False, interrupt_at=None):
        plugins = load_plugins(autoload=False)

        class Watch:
            @hookimpl
            def crs_bench_epoch_end(self, run, epoch, metrics):
                seen.append((name + ("+resume" if resume else ""), epoch))
                if epoch == interrupt_at:
                    raise KeyboardInterrupt
        plugins.manager.register(Watch(), name="watch")
        return execute(config, plugins, results_dir=tmp_path / name, cache_dir=tmp_path / "cache", resume=resume,
                       quiet=True)

    whole = run("whole")
    with pytest.raises(KeyboardInterrupt):
        run("split", interrupt_at=2)
    [run_dir] = (tmp_path / "split" / "runs").iterdir()
    assert (run_dir / "checkpoint-gcrs-epoch.pt").is_file() and not (run_dir / "record.json").exists()
    resumed = run("split", resume=True)
    assert [epoch for name, epoch in seen if name == "split+resume"] == [3]  # epochs 1 and 2 are not rerun

    def strip(history):
        return [{k: v for k, v in h.items() if k != "train_seconds"} for h in history]

    assert len(whole["training"]["history"]) == 3
    assert strip(resumed["training"]["history"]) == strip(whole["training"]["history"])
    assert resumed["training"]["steps"] == whole["training"]["steps"]
    assert resumed["metrics"] == whole["metrics"]
    assert not list(run_dir.glob("checkpoint*"))  # removed once the record is written


@pytest.mark.slow
def test_training_teaches_the_tiny_model_to_rank_the_target_items(tmp_path):
    """GCRS learns, not just runs: on `synthetic` (the seeker's genre decides the target), the test-tiny model
    after 4 epochs over 512 instances ranks the targets far above chance and above itself untrained
    (epochs 0: the same model, its SID rows and adapter as initialised)."""
    from harness.config import resolve
    from harness.plugin_manager import load_plugins
    from harness.runner import execute

    def recall_at_10(epochs: int) -> tuple[float, int]:
        [config] = resolve(flags={"model": "gcrs", "train.epochs": max(epochs, 1)},
                           overrides=["model.params.preset=test-tiny", f"model.params.epochs={epochs}",
                                      "model.params.max_train_instances=512"])
        record = execute(config, load_plugins(autoload=False), results_dir=tmp_path / f"e{epochs}",
                         cache_dir=tmp_path / "cache", quiet=True)
        return record["metrics"]["rec"]["standard"]["recall@10"], record["dataset"]["num_items"]

    trained, items = recall_at_10(4)
    untrained, _ = recall_at_10(0)
    assert trained > 2.5 * 10 / items  # chance: 10 of the catalogue's items
    assert trained > untrained + 0.03
