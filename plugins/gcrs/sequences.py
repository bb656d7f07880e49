"""Serialisation (SYSTEMS.md §11.2): the new vocabulary, item mentions as ``<BOI> SID <EOI>`` spans, contexts
and assistant-side targets as token ids.

Why ids are concatenated rather than strings tokenised: a SID span must be exactly its L + 2 new tokens, and
text pieces around it keep their own tokenisation, identical in training and decoding. Context lines are
``User: ...`` / ``Assistant: ...``; the prompt ends with ``Assistant:``; a target is
``<MODE=REC><BOI> c_1 .. c_L <EOI><RESP> text<eos>`` or ``<MODE=CHAT><RESP> text<eos>``, so the model factorises
P(m | C) P(i | m, C) P(r | i, m, C), and only target tokens are in the loss.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from harness.data import RECOMMENDER, Turn

SPECIAL = ("<BOI>", "<EOI>", "<RESP>", "<MODE=REC>", "<MODE=CHAT>")
PLACEHOLDER = re.compile(r"<\s*movie\s*>", re.IGNORECASE)


def code_token(level: int, code: int) -> str:
    """Level l's code c as ``<a_c>``, ``<b_c>``, ... (one letter per level)."""
    return f"<{chr(97 + level)}_{code}>"


def new_tokens(levels: int, size: int) -> list[str]:
    return [code_token(level, code) for level in range(levels) for code in range(size)] + list(SPECIAL)


@dataclass
class Vocabulary:
    """Ids of the added tokens: code (l, c) is ``first + l * size + c``; then the five special tokens."""

    first: int
    levels: int
    size: int
    boi: int = field(init=False)
    eoi: int = field(init=False)
    resp: int = field(init=False)
    rec: int = field(init=False)
    chat: int = field(init=False)

    def __post_init__(self) -> None:
        self.boi, self.eoi, self.resp, self.rec, self.chat = (self.special(name) for name in SPECIAL)

    @property
    def count(self) -> int:
        return self.levels * self.size + len(SPECIAL)

    def special(self, name: str) -> int:
        return self.first + self.levels * self.size + SPECIAL.index(name)

    def level_start(self, level: int) -> int:
        return self.first + level * self.size

    def indices(self) -> list[int]:
        return list(range(self.first, self.first + self.count))


class Serializer:
    """Token ids of contexts and targets for one tokenizer and semantic-ID table (text pieces memoised)."""

    def __init__(self, tokenizer: Any, vocab: Vocabulary, codes: np.ndarray, max_input: int, max_response: int):
        self.tokenizer, self.vocab = tokenizer, vocab
        self.codes = np.asarray(codes)
        self.max_input, self.max_response = max_input, max_response
        self._pieces: dict[str, list[int]] = {}
        self.eos = int(tokenizer.eos_token_id)

    def text(self, text: str) -> list[int]:
        if text not in self._pieces:
            self._pieces[text] = list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []
        return self._pieces[text]

    def span(self, item: int) -> list[int]:
        """``<BOI> c_1 .. c_L <EOI>`` of a catalogue item."""
        v = self.vocab
        return [v.boi, *(v.level_start(level) + int(c) for level, c in enumerate(self.codes[item])), v.eoi]

    def turn(self, turn: Turn) -> list[int]:
        """The turn's text, each item mention as its SID span (titles kept when mentions and items disagree)."""
        masked = turn.masked_text or ""
        parts = PLACEHOLDER.split(masked)
        if not turn.items or len(parts) - 1 != len(turn.items):
            return self.text(turn.text)
        ids = self.text(parts[0])
        for item, part in zip(turn.items, parts[1:]):
            ids = ids + self.span(item) + self.text(part)
        return ids

    def prompt(self, turns: Sequence[Turn]) -> list[int]:
        """Context lines left-truncated to `max_input` tokens, then ``Assistant:``."""
        ids: list[int] = []
        for turn in turns:
            role = "Assistant: " if turn.role == RECOMMENDER else "User: "
            ids += self.text(role) + self.turn(turn) + self.text("\n")
        return ids[-self.max_input:] + self.text("Assistant:")

    def target(self, turn: Turn | None, item: int | None, with_text: bool = True) -> list[int]:
        """Mode, the item's span when recommending, ``<RESP>``, the response (cut to `max_response`) and eos."""
        v = self.vocab
        head = [v.rec, *self.span(item), v.resp] if item is not None else [v.chat, v.resp]
        if turn is None or not with_text:
            return head
        spaced = replace(turn, text=" " + turn.text.strip(), masked_text=" " + (turn.masked_text or "").strip())
        body = self.turn(spaced) if turn.text.strip() else []
        return head + (body[:self.max_response] if len(body) >= self.max_response else body + [self.eos])
