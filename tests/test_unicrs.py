"""UniCRS on the `test-tiny` preset and the synthetic dataset: KGPrompt's deep prefixes, frozen backbones,
the three stages with their checkpoints and resume, generation under the conversation prompt, end-to-end runs
of `unicrs` and of `lumicrs` with ``backbone: prompt-lm``."""
from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")
pytest.importorskip("transformers")

from harness import hookimpl  # noqa: E402
from harness.api import RunContext  # noqa: E402
from harness.config import resolve  # noqa: E402
from harness.plugin_manager import load_plugins  # noqa: E402
from harness.popularity import compute_statistics  # noqa: E402
from harness.runner import execute  # noqa: E402

SMALL = ["dataset.params.train_dialogues=60", "dataset.params.valid_dialogues=12",
         "dataset.params.test_dialogues=12", "dataset.params.num_items=60"]
TINY = ["model.params.preset=test-tiny", "model.params.pretrain_max_samples=32",
        "model.params.conv_max_samples=32", "model.params.rec_max_samples=48", "model.params.max_new_tokens=6"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    from plugins.synthetic import build_synthetic

    dataset = build_synthetic(num_items=60, train_dialogues=60, valid_dialogues=12, test_dialogues=12)
    train = dataset.splits["train"]
    stats = compute_statistics(dataset.num_items, train.dialogues, train.rec_samples)
    return RunContext(dataset, stats, "cpu", 0, tmp_path_factory.mktemp("cache"), {"loss": {"name": "ce"}})


def tiny(ctx, **settings):
    from plugins.unicrs.model import UniCRS

    torch.manual_seed(0)
    return UniCRS(ctx, preset="test-tiny", **settings)


def run(tmp_path, plugins, flags, overrides=(), resume=False, name="results", conv_limit=4):
    [config] = resolve(flags={"train.epochs": 20, "conv_limit": conv_limit, **flags},
                       overrides=[*SMALL, *TINY, *overrides])
    return execute(config, plugins, results_dir=tmp_path / name, cache_dir=tmp_path / "cache", resume=resume,
                   quiet=True)


# ------------------------------------------------------------------------------------------- prompt


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_prefix_shapes_match_the_decoders_layers_and_key_value_heads(ctx, arch):
    """One (keys, values) pair per decoder layer, [B, kv_heads, n_prefix + q, head_dim]; LLaMA's grouped
    key/value heads (fewer than its query heads, as SmolLM2's 3 of 9) are what the prefix must match."""
    from plugins.models.blocks import prepare_kg
    from plugins.unicrs import backbones
    from plugins.unicrs.decoding import hidden_states
    from plugins.unicrs.prompt import KGPrompt

    tokenizer = backbones.tiny_tokenizer(["a tiny corpus for a tiny tokenizer"] * 4)
    decoder = backbones.tiny_decoder(tokenizer, arch).eval()
    geometry = backbones.decoder_geometry(decoder.config)
    expected_kv = 2 if arch == "llama" else decoder.config.num_attention_heads
    assert geometry.kv_heads == expected_kv and geometry.layers == 2
    prompt_encoder = KGPrompt(prepare_kg(ctx.dataset.kg, None), 24, geometry, 16, n_prefix=3)
    states, token_mask = torch.randn(2, 5, 24), torch.ones(2, 5, dtype=torch.bool)
    pad = ctx.dataset.kg.num_entities
    entities = torch.tensor([[0, 1, pad], [2, 3, pad]])
    entity_mask = entities != pad
    for kind, length in (("rec", 3 + 3), ("conv", 3 + 5)):
        prompt = prompt_encoder(states, token_mask, entities, entity_mask, kind=kind)
        assert len(prompt.layers) == decoder.config.num_hidden_layers
        for keys, values in prompt.layers:
            assert keys.shape == values.shape == (2, geometry.kv_heads, length, geometry.head_dim)
        assert prompt.mask[:, :3].all()  # the task prefix is always visible
        ids = torch.randint(5, len(tokenizer), (2, 4))
        hidden = hidden_states(decoder, ids, torch.ones(2, 4, dtype=torch.bool), prompt)
        assert hidden.shape == (2, 4, geometry.hidden)
    unprefixed = prompt_encoder(states, token_mask, entities, entity_mask, kind="rec", use_prefix=False)
    assert unprefixed.length == 3 and torch.equal(unprefixed.mask, entity_mask)


def test_fusion_ignores_padding_and_contexts_without_entities(ctx):
    from plugins.models.blocks import prepare_kg
    from plugins.unicrs.prompt import DecoderGeometry, KGPrompt

    torch.manual_seed(0)
    encoder = KGPrompt(prepare_kg(ctx.dataset.kg, None), 8, DecoderGeometry(1, 1, 8, 8), 8, n_prefix=0)
    tokens = torch.randn(1, 3, 8)
    table = torch.randn(4, 8)
    none = torch.zeros(1, 2, dtype=torch.bool)
    fused, mask = encoder.fuse(tokens, torch.ones(1, 3, dtype=torch.bool), table[:2][None], none, "conv")
    assert torch.equal(fused, tokens) and mask.all()  # no entity: P = T
    token_mask = torch.tensor([[True, True, False]])
    a, _ = encoder.fuse(tokens, token_mask, table[:2][None], torch.ones(1, 2, dtype=torch.bool), "rec")
    changed = tokens.clone()
    changed[0, 2] = 100.0  # a padded token never receives attention weight
    b, _ = encoder.fuse(changed, token_mask, table[:2][None], torch.ones(1, 2, dtype=torch.bool), "rec")
    assert torch.allclose(a, b)


def test_grouped_rgcn_equals_pyg_rgcnconv(ctx):
    from plugins.models.blocks import RGCNEncoder, prepare_kg

    kg = prepare_kg(ctx.dataset.kg, None)
    torch.manual_seed(3)
    pyg = RGCNEncoder(kg, 8, 2, 2, featureless=False)
    torch.manual_seed(3)
    grouped = RGCNEncoder(kg, 8, 2, 2, featureless=False, grouped=True)
    assert torch.allclose(pyg(), grouped(), atol=1e-5)
    grouped().square().sum().backward()
    pyg().square().sum().backward()
    for (name, a), (_, b) in zip(pyg.named_parameters(), grouped.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-4), name


def test_gradients_reach_kgprompt_and_not_the_frozen_backbones(ctx):
    model = tiny(ctx, train_backbones=False)
    split = ctx.dataset.splits["train"]
    samples = split.rec_samples[:4]
    model.train()
    loss = model.training_loss(model.make_batch(split, samples), torch.tensor([s.label for s in samples]), None)
    loss.backward()
    for copy in ("rec",):
        grads = {n: p.grad for n, p in model.prompts[copy].named_parameters()}
        assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), \
            [n for n, g in grads.items() if g is None]
        assert grads["prompt_proj.weight"].abs().sum() > 0 and grads["kg_encoder.embedding.weight"].abs().sum() > 0
    assert all(p.grad is None for p in model.prompts["conv"].parameters())  # the other copy is untouched
    assert all(not p.requires_grad and p.grad is None for p in model.decoder.parameters())
    assert all(not p.requires_grad and p.grad is None for p in model.encoder.parameters())
    assert not model.decoder.training and not model.encoder.training  # frozen: no dropout
    assert not any(k.startswith(("encoder.", "decoder.")) for k in model.trainable_state())
    conv_loss = model.conv_loss(model.batch([split.context(s) for s in samples], [s.context_entities for s in samples],
                                            ["How about <movie>?"] * 4))
    conv_loss.backward()
    assert model.prompts["conv"].prefix.grad.abs().sum() > 0


def test_frozen_encoder_states_are_cached_on_disk(ctx):
    from plugins.unicrs.states import ENCODE_COUNTER

    first = tiny(ctx, train_backbones=False)
    split = ctx.dataset.splits["valid"]
    first.make_batch(split, split.rec_samples[:2])
    assert first.states.encoded > 0 and list(first.states.store.directory.glob("*.npz"))
    before = ENCODE_COUNTER[first.states.key]
    second = tiny(ctx, train_backbones=False)
    batch = second.make_batch(split, split.rec_samples[:2])
    assert ENCODE_COUNTER[first.states.key] == before and second.states.cache_hits > 0
    assert batch["states"].dtype == torch.float32 and batch["states"].shape[:2] == batch["state_mask"].shape


# -------------------------------------------------------------------------------------- generation


def test_generation_under_the_conversation_prompt_fills_recommended_titles(ctx):
    from harness.conversation import contexts_only, item_name
    from plugins.unicrs.decoding import ban_repeated_ngrams
    from plugins.unicrs.model import _fill

    model = tiny(ctx)
    test = ctx.dataset.splits["test"]
    split, samples = contexts_only(test, test.conv_samples[:3])
    recommendations = torch.arange(30).reshape(3, 10).numpy()
    responses = model.generate(split, samples, recommendations)
    assert len(responses) == 3 and all(isinstance(r, str) for r in responses)
    batch = model.batch([split.context(s) for s in samples], [() for _ in samples], cue=True)
    from plugins.unicrs.decoding import greedy

    tokens = greedy(model.decoder.eval(), batch["dec_ids"], batch["dec_mask"], model.prompt("conv", batch), 5,
                    eos_id=-1, pad_id=0, no_repeat_ngram=3)
    assert tokens.shape == (3, 5)  # without an eos, exactly max_new_tokens
    assert _fill("Try <movie> or < Movie >.", ["Alpha", "Beta"]) == "Try Alpha or Beta."
    assert _fill("No slot.", [item_name("Fargo (1996 film)")]) == "No slot."
    logits = ban_repeated_ngrams(torch.zeros(1, 6), torch.tensor([[1, 2, 3, 1, 2]]), 3)
    assert logits[0, 3] == float("-inf") and torch.isfinite(logits[0, [0, 1, 2, 4, 5]]).all()


# ----------------------------------------------------------------------------------------- stages


class Capture:
    """Keeps the trained state of the last run (the record does not hold weights)."""

    def __init__(self):
        self.state = None

    @hookimpl
    def crs_bench_run_finish(self, run, record):
        self.state = {k: v.clone() for k, v in run.model.trainable_state().items()}


def test_stages_checkpoint_and_a_resumed_stage_equals_an_uninterrupted_one(tmp_path):
    flags = {"model": "unicrs"}
    extra = ["model.params.pretrain_epochs=2", "model.params.pretrain_patience=5", "model.params.conv_epochs=1",
             "model.params.rec_epochs=1"]
    whole_plugins, whole = load_plugins(autoload=False), Capture()
    whole_plugins.manager.register(whole, name="capture")
    uninterrupted = run(tmp_path, whole_plugins, flags, extra, name="whole")
    stages = uninterrupted["training"]["stages"]
    assert list(stages) == ["pretrain", "conv", "rec"] and stages["pretrain"]["epochs_run"] == 2
    for stage in stages.values():
        assert stage["steps"] > 0 and stage["lr"] > 0 and stage["warmup_steps"] == 0 and stage["best_epoch"] >= 1
    assert stages["pretrain"]["units"] == 32 and stages["pretrain"]["units_available"] > 32
    assert uninterrupted["stages"]["train"] == "plugins.unicrs"
    details = uninterrupted["components"]["model"]["details"]
    assert details["preset"] == "test-tiny" and details["test_only"] and details["stages"]["rec"]["units"] == 48

    seen = []

    class CtrlC:
        def __init__(self, at):
            self.at = at

        @hookimpl
        def crs_bench_epoch_end(self, run, epoch, metrics):
            seen.append((metrics["stage"], epoch))
            if epoch == self.at:
                raise KeyboardInterrupt

    def interrupted_at(epoch, resume):
        interrupting = load_plugins(autoload=False)
        interrupting.manager.register(CtrlC(epoch), name="ctrl-c")
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path, interrupting, flags, extra, name="split", resume=resume)

    interrupted_at(1, resume=False)  # after the first of the two pre-training epochs
    [run_dir] = (tmp_path / "split" / "runs").iterdir()
    assert (run_dir / "checkpoint-prompt-pretrain.pt").is_file() and not (run_dir / "record.json").exists()
    from harness.training import load_checkpoint

    saved = load_checkpoint(run_dir / "checkpoint-prompt-pretrain.pt")  # weights_only=True
    assert saved["state"]["epoch"] == 1 and "prompts.rec.prompt_proj.weight" in saved["model"]

    interrupted_at(3, resume=True)  # pre-training finished, then interrupted after the conversation epoch
    resumed_plugins, resumed_state = load_plugins(autoload=False), Capture()
    resumed_plugins.manager.register(resumed_state, name="capture")
    resumed = run(tmp_path, resumed_plugins, flags, extra, resume=True, name="split")
    assert seen == [("pretrain", 1), ("pretrain", 2), ("conv", 3)]  # finished stages are skipped, not rerun
    def strip(history):
        return [{k: v for k, v in h.items() if k != "train_seconds"} for h in history]

    for stage in ("pretrain", "conv", "rec"):
        assert strip(resumed["training"]["stages"][stage]["history"]) == strip(stages[stage]["history"]), stage
    assert set(resumed_state.state) == set(whole.state)
    assert all(torch.equal(resumed_state.state[k], whole.state[k]) for k in whole.state)
    assert resumed["metrics"] == uninterrupted["metrics"]
    assert not list(run_dir.glob("checkpoint*"))  # removed once the record is written


def test_bench_run_unicrs_speaks_and_recommends(run_bench, tmp_path):
    code, out, err = run_bench("run", "--model", "unicrs", "--conv-limit", "4", "--epochs", "1",
                               *[arg for setting in SMALL + TINY for arg in ("--set", setting)])
    assert code == 0, err
    import json

    [record_path] = (tmp_path / "results" / "runs").glob("*/record.json")
    record = json.loads(record_path.read_text())
    assert record["tasks"] == ["conv", "rec"]
    assert record["conversation"]["speaker"] == "model" and record["conversation"]["samples"] == 4
    assert record["components"]["model"]["details"]["preset"] == "test-tiny"
    assert record["conversation"]["fit"]["trained"] is True


def test_lumicrs_on_the_prompt_lm_backbone_runs_and_is_labelled(tmp_path, plugins):
    from harness.leaderboard import build_tables

    record = run(tmp_path, plugins, {"model": "lumicrs", "loss": "acfl", "train.epochs": 1},
                 ["model.params.backbone=prompt-lm", "model.params.num_prototypes=4"], conv_limit=2)
    details = record["components"]["model"]["details"]
    assert details["backbone"] == "prompt-lm" and details["class_prototypes"]["count"] == 4
    assert details["prompt_lm"]["settings"]["rec_softmax"] == "items"
    assert record["training"]["stages"]["rec"]["loss"] == "acfl"
    assert record["tasks"] == ["conv", "rec"]
    tables = build_tables([(None, record)], plugins.registries)
    assert {row.label["model"] for table in tables for row in table.rows} == {"lumicrs (prompt-lm)"}
    record["components"]["model"]["details"].pop("backbone")  # records written before the switch
    assert {row.label["model"] for table in build_tables([(None, record)]) for row in table.rows} == {"lumicrs"}


def test_settings_are_checked_and_recorded(ctx, plugins):
    from harness.config import ConfigError, validate_params
    from plugins.unicrs.presets import PRESETS, resolve as resolve_settings

    component = plugins.registries.models.get("unicrs")
    validate_params("model", "unicrs", component.resolve(), {"preset": "cpu", "rec_epochs": 2}, skip=1)
    with pytest.raises(ConfigError, match="has no parameter 'rec_epoch'"):
        validate_params("model", "unicrs", component.resolve(), {"rec_epoch": 2}, skip=1)
    with pytest.raises(ConfigError, match="expects int"):
        validate_params("model", "unicrs", component.resolve(), {"decoder_layers": "four"}, skip=1)
    lumicrs = plugins.registries.models.get("lumicrs").resolve()
    validate_params("model", "lumicrs", lumicrs, {"backbone": "prompt-lm", "preset": "test-tiny", "dim": 8}, skip=1)
    with pytest.raises(TypeError, match="backbone 'hybrid' has no parameter 'preset'"):
        lumicrs(ctx, backbone="hybrid", preset="cpu")
    assert set(PRESETS) == {"paper", "cpu", "test-tiny"} and resolve_settings("cpu", {})["decoder"] == "smollm2"
    with pytest.raises(ValueError, match="rec_softmax=items"):
        tiny(RunContext(ctx.dataset, ctx.stats, "cpu", 0, ctx.cache_dir, {"loss": {"name": "acfl"}}))


def test_prompt_positions_are_unicrs_only_so_switch_models_keep_their_config_hashes():
    """`prompt_positions` is a setting of `unicrs`; the models on its backbone switch run the preset's value
    and do not list it, so their stored configs (hybrid-backbone ones included) keep their hashes."""
    import inspect

    from plugins.dcrs.factory import build_dcrs
    from plugins.lumicrs.model import build_lumicrs
    from plugins.mscrs.model import build_mscrs
    from plugins.unicrs.presets import PRESETS, signature

    assert "prompt_positions" in signature([]).parameters
    assert all(preset["prompt_positions"] == "real" for preset in PRESETS.values())
    for factory in (build_lumicrs, build_mscrs, build_dcrs):
        assert "prompt_positions" not in inspect.signature(factory).parameters, factory.__name__


@pytest.mark.parametrize("positions, independent", [("real", True), ("padded", False)])
def test_a_contexts_representation_does_not_depend_on_its_batch(ctx, positions, independent):
    """The deep prompt is padded to the batch's most entities; the decoder numbers a context's tokens after
    its own prompt positions (`prompt_positions: real`), so the first 8 contexts of a batch of 16 get the
    representation they get alone. The old numbering, after the padded length, did not (the bug fixed)."""
    from plugins.unicrs.stages import rec_units

    model = tiny(ctx, train_backbones=False, prompt_positions=positions).eval()  # no dropout: exact states
    train = ctx.dataset.splits["train"]
    units = rec_units(train, train.rec_samples)
    counts = [len(u.entities) for u in units]
    # 8 contexts with few entities, then 8 with more, so the batch of 16 pads the first 8's prompts
    few = [u for u, n in zip(units, counts) if 0 < n <= 2][:8]
    many = [u for u, n in zip(units, counts) if n >= 4][:8]
    assert len(few) == 8 and len(many) == 8
    model.ensure_texts([u.turns for u in few + many])
    with torch.no_grad():
        alone = model.represent(model.rec_inputs(few), use_prefix=False)
        batched = model.represent(model.rec_inputs(few + many), use_prefix=False)[:8]
    assert torch.allclose(alone, batched, atol=1e-5) == independent
