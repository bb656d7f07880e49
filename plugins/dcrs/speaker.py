"""`dcrs-lm`: the `lm` generator conditioned on retrieved training demonstrations, as text in the prompt.

DCRS conditions its response generator on n retrieved (context, response) pairs (D5 in docs/dcrs.md; SYSTEMS.md
§8, "injection for conversation"; the paper feeds them as soft tokens of a frozen encoder). Here they are written
into the prompt, before the dialogue (`PROMPT_FORMAT`), so the `lm` generator's fine-tuning, selection and decoding stay
exactly those of `plugins.generators.lm` and the comparison with `lm` (same parameters, no demonstrations)
isolates the demonstrations. Each demonstration is the last context turn of a training conversation sample
and its response with titles in place, at most `max_demo_tokens` tokens (the response keeps up to half, the
context turn the rest, its newest tokens). The pool is the training conversation samples; a training prompt
never shows a demonstration from its own conversation. Demonstration tokens are prompt tokens, so they carry
no loss (only the target is labelled).
"""
from __future__ import annotations

from typing import Any, Sequence

from harness.api import ConvSample, RunContext, Split
from harness.data import RECOMMENDER
from plugins.generators.lm import LMGenerator

from .demonstrations import DemonstrationIndex, conv_pool, resolve_retriever
from .signature import extended

PROMPT_FORMAT = ("'Examples:' then per demonstration '<User:/System: last context turn>\\nSystem: <response>\\n', "
                 "'Now:' then the lm generator's prompt (context, Recommend: <item>, System:)")


class DemonstrationLM(LMGenerator):
    """`LMGenerator` whose prompts start with the top-n training demonstrations of their context."""

    def __init__(self, ctx: RunContext, preset: str = "released", retriever: str | None = None,
                 retriever_params: dict[str, Any] | None = None, demonstrations: int = 2,
                 max_demo_tokens: int = 40, **lm: Any):
        super().__init__(ctx, **lm)
        if max_demo_tokens < 8:
            raise ValueError(f"dcrs-lm max_demo_tokens must be >= 8, got {max_demo_tokens}")
        self.preset, self.max_demo_tokens = preset, max_demo_tokens
        self.pool = conv_pool(ctx.train)
        self.index = DemonstrationIndex(ctx, self.pool, resolve_retriever(preset, "conv", retriever),
                                        retriever_params, demonstrations, "conv")
        self.train_split = ctx.train

    def demo_tokens(self, position: int) -> list[int]:
        """Token ids of one demonstration (module docstring), at most `max_demo_tokens`."""
        entry = self.pool[position]
        last = self.train_split.dialogues[entry.dialogue_index].turns[entry.turn - 1] if entry.turn else None
        line = "" if last is None else f"{'System' if last.role == RECOMMENDER else 'User'}: {last.text}\n"
        encode = self.tokenizer
        response = encode(f"System: {entry.response.strip()}\n", add_special_tokens=False)["input_ids"]
        response = response[:self.max_demo_tokens // 2]
        context = encode(line, add_special_tokens=False)["input_ids"][-(self.max_demo_tokens - len(response)):] \
            if line else []
        return context + response

    def prompts(self, split: Split, samples: Sequence[ConvSample], items: Sequence[int | None]) -> list[list[int]]:
        """The `lm` prompts, each after its demonstrations (one search for all samples)."""
        base = super().prompts(split, samples, items)
        demos = self.index.for_samples(split, samples)
        head = self.tokenizer("Examples:\n", add_special_tokens=False)["input_ids"]
        now = self.tokenizer("Now:\n", add_special_tokens=False)["input_ids"]
        cache: dict[int, list[int]] = {}
        out = []
        for prompt, row in zip(base, demos.tolist()):
            shown = [cache.setdefault(p, self.demo_tokens(p)) for p in row if p >= 0]
            out.append(head + [t for block in shown for t in block] + now + prompt if shown else prompt)
        return out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "preset": self.preset, "conditioning": "text in the prompt",
                "demonstration_format": PROMPT_FORMAT, "max_demo_tokens": self.max_demo_tokens,
                "demonstrations": self.index.describe()}


DemonstrationLM.__signature__ = extended(DemonstrationLM.__init__, LMGenerator.__init__)
