"""`dcrs-lm`: demonstrations written before the `lm` prompt, from the training pool only, never from the
prompt's own conversation, no loss on them, and a conformant generator in a real run."""
from __future__ import annotations

import pytest

from harness.conversation import contexts_only
from harness.testing import check_generator
from plugins.dcrs.speaker import DemonstrationLM
from plugins.generators.lm import LMGenerator
from tests.test_generators import TINY_LLAMA, _ctx, small, tiny_tokenizer  # noqa: F401  (fixtures)

SETTINGS = {"config": TINY_LLAMA, "max_train_samples": 16, "max_valid_samples": 8, "max_new_tokens": 6, "epochs": 1}


@pytest.fixture
def speakers(plugins, small, tmp_path, tiny_tokenizer):  # noqa: F811
    params = {**SETTINGS, "tokenizer": str(tiny_tokenizer)}
    ctx = _ctx(small, plugins, tmp_path)
    with_demos, plain = DemonstrationLM(ctx, retriever="bm25", demonstrations=2, **params), LMGenerator(ctx, **params)
    with_demos.load()
    plain.load()
    return with_demos, plain


def test_prompts_are_the_lm_prompts_after_their_demonstrations(speakers, small):  # noqa: F811
    with_demos, plain = speakers
    test = small.splits["test"]
    split, samples = contexts_only(test, test.conv_samples[:6])
    items = [0] * len(samples)
    prompts, reference = with_demos.prompts(split, samples, items), plain.prompts(split, samples, items)
    head = with_demos.tokenizer("Examples:\n", add_special_tokens=False)["input_ids"]
    demos = with_demos.index.for_samples(split, samples)
    for prompt, bare, row in zip(prompts, reference, demos.tolist()):
        assert prompt[:len(head)] == head and prompt[-len(bare):] == bare  # the lm prompt, unchanged, at the end
        blocks = [with_demos.demo_tokens(p) for p in row]
        assert all(0 < len(b) <= with_demos.max_demo_tokens for b in blocks)
        body = prompt[len(head):len(prompt) - len(bare)]
        assert body[:sum(map(len, blocks))] == [t for b in blocks for t in b]
    text = with_demos.tokenizer.decode(prompts[0])
    assert text.startswith("Examples:") and "Now:" in text and "System:" in text


def test_training_prompts_never_show_their_own_conversation(speakers, small):  # noqa: F811
    with_demos, _ = speakers
    train = small.splits["train"]
    demos = with_demos.index.for_samples(train, train.conv_samples)
    for sample, row in zip(train.conv_samples, demos.tolist()):
        own = train.dialogues[sample.dialogue_index].id
        assert all(with_demos.pool[p].dialogue_id != own for p in row if p >= 0)
    assert {e.dialogue_id for e in with_demos.pool} <= {d.id for d in train.dialogues}


def test_demonstrations_carry_no_loss(speakers, small):  # noqa: F811
    """The loss of a prompt with demonstrations is a loss over the target tokens only."""
    with_demos, _ = speakers
    valid = small.splits["valid"]
    samples = valid.conv_samples[:4]
    prompts, targets = with_demos.examples(valid, samples)
    _, tokens = with_demos.nll(prompts, targets)
    assert tokens == sum(len(t) for t in targets)


def test_dcrs_lm_conforms(tiny_tokenizer):  # noqa: F811
    result = check_generator("dcrs-lm", {**SETTINGS, "tokenizer": str(tiny_tokenizer), "retriever": "bm25"})
    details = result.record["components"]["generator"]["details"]
    assert details["conditioning"] == "text in the prompt" and details["demonstrations"]["retriever"] == "bm25"
    assert "conv" in result.record["metrics"]
