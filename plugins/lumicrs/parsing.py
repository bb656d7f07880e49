"""Free text -> `harness.data.Dialogue`: role lines, movie titles found as catalogue indices, masked text; and
the rule-based checks every generated dialogue must pass (SYSTEMS.md §10.5 offline route).

Titles are matched case-insensitively on word boundaries, both as stored ("Joker (2019 film)") and without
a trailing parenthetical ("Joker"), longest first; catalogue titles shorter than `min_chars` are matched only
when they are expected (target and prompt movies), so "Up" or "It" in ordinary prose is not a mention.
"""
from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from harness.data import MOVIE_PLACEHOLDER, RECOMMENDER, SEEKER, Catalogue, Dialogue, KnowledgeGraph, Turn

ROLE_LINE = re.compile(r"^\s*[\*#>\-\s]*(seeker|user|human|customer|recommender|assistant|agent|bot)\s*[\*]*\s*[:：]"
                       r"\s*[\*]*\s*(.*)$", re.IGNORECASE)
ROLE_NAMES = {"seeker": SEEKER, "user": SEEKER, "human": SEEKER, "customer": SEEKER,
              "recommender": RECOMMENDER, "assistant": RECOMMENDER, "agent": RECOMMENDER, "bot": RECOMMENDER}
WORD = re.compile(r"[a-z0-9']+")
SENTENCE = re.compile(r"[^.!?\n]+")


def surface(title: str) -> str:
    """The name people write: the title without a trailing '(...)' (year, 'film')."""
    return re.sub(r"\s*\([^()]*\)\s*$", "", title).strip() or title.strip()


class TitleIndex:
    """Finds catalogue titles in text; each match is one mention of a catalogue index."""

    def __init__(self, catalogue: Catalogue, min_chars: int = 6):
        self.titles = catalogue.titles
        self.min_chars = min_chars
        self.forms: dict[str, int] = {}
        for index, title in enumerate(catalogue.titles):  # ascending index: the first owner keeps a form
            for form in {title.strip().lower(), surface(title).lower()}:
                if form and form not in self.forms:
                    self.forms[form] = index
        general = sorted((f for f in self.forms if len(f) >= min_chars), key=lambda f: (-len(f), f))
        self._general = _alternation(general)

    def find(self, text: str, expected: Iterable[int] = ()) -> list[tuple[int, int, int]]:
        """(start, end, item) of every mention in text order; `expected` items are matched at any length
        and win over another item with the same written form."""
        expected_forms: dict[str, int] = {}
        for item in sorted(set(expected)):
            for form in {self.titles[item].strip().lower(), surface(self.titles[item]).lower()}:
                expected_forms.setdefault(form, item)
        spans: list[tuple[int, int, int]] = []
        taken = np.zeros(len(text) + 1, dtype=bool)
        patterns = [(_alternation(sorted(expected_forms, key=lambda f: (-len(f), f))), expected_forms),
                    (self._general, self.forms)]
        for pattern, owners in patterns:
            if pattern is None:
                continue
            for match in pattern.finditer(text):
                start, end = match.span(1)
                if taken[start:end].any():
                    continue
                taken[start:end] = True
                spans.append((start, end, owners[match.group(1).lower()]))
        return sorted(spans)


def _alternation(forms: Sequence[str]) -> re.Pattern | None:
    if not forms:
        return None
    return re.compile(r"(?<![\w])(" + "|".join(re.escape(f) for f in forms) + r")(?![\w])", re.IGNORECASE)


def split_roles(text: str) -> list[tuple[str, str]]:
    """'Seeker: ...' / 'Recommender: ...' lines (also User/Assistant) -> [(role, text)]; unprefixed lines
    continue the previous turn; text before the first role line is dropped."""
    turns: list[tuple[str, str]] = []
    for line in text.splitlines():
        match = ROLE_LINE.match(line)
        if match:
            turns.append((ROLE_NAMES[match.group(1).lower()], match.group(2).strip()))
        elif turns and line.strip():
            role, previous = turns[-1]
            turns[-1] = (role, f"{previous} {line.strip()}".strip())
    return turns


@dataclass
class Parsed:
    raw: list[tuple[str, str]]  # role lines as written (before merging)
    turns: list[Turn]  # merged turns with items, entities and masked text


def to_turns(raw: Sequence[tuple[str, str]], titles: TitleIndex, kg: KnowledgeGraph | None,
             expected: Iterable[int] = ()) -> Parsed:
    """Role lines -> merged `Turn`s with catalogue indices, KG entities and `<movie>`-masked text."""
    from harness.data import merge_turns

    expected = list(expected)
    messages = []
    for role, text in raw:
        spans = titles.find(text, expected)
        items = tuple(item for _, _, item in spans)
        masked, last = [], 0
        for start, end, _ in spans:
            masked.append(text[last:start] + MOVIE_PLACEHOLDER)
            last = end
        masked.append(text[last:])
        entities = tuple(kg.item_entities[item] for item in items) if kg is not None else ()
        messages.append(Turn(role, text, items, entities, "".join(masked)))
    return Parsed(list(raw), merge_turns(messages))


# -------------------------------------------------------------------------------------- mandatory checks

MANDATORY_CHECKS = ("parsed", "target_recommended", "roles_alternate", "no_repetition")


def tokens(text: str) -> list[str]:
    return WORD.findall(text.lower())


def degenerate(raw: Sequence[tuple[str, str]], max_sentence_repeats: int = 2, max_ngram_repeats: int = 3,
               n: int = 4) -> bool:
    """Looping output: a sentence written more than `max_sentence_repeats` times, or a word n-gram more
    than `max_ngram_repeats` times, or the same turn text twice."""
    texts = [" ".join(tokens(text)) for _, text in raw]
    nonempty = [t for t in texts if t]
    if len(set(nonempty)) < len(nonempty):
        return True
    sentences = Counter(" ".join(tokens(s)) for _, text in raw for s in SENTENCE.findall(text) if tokens(s))
    if sentences and max(sentences.values()) > max_sentence_repeats:
        return True
    words = [w for _, text in raw for w in tokens(text)]
    grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return bool(grams) and max(grams.values()) > max_ngram_repeats


def mandatory_checks(parsed: Parsed, target: int) -> dict[str, bool]:
    """The rule checks that always run: pass = True. Order matters only for reporting the first failure."""
    raw = parsed.raw
    roles = [role for role, _ in raw]
    recommended = any(turn.role == RECOMMENDER and t >= 1 and target in turn.items
                      for t, turn in enumerate(parsed.turns))
    return {
        "parsed": SEEKER in roles and RECOMMENDER in roles,
        "target_recommended": recommended,
        "roles_alternate": all(a != b for a, b in zip(roles, roles[1:])),
        "no_repetition": not degenerate(raw),
    }


def first_failure(checks: dict[str, bool]) -> str | None:
    return next((name for name in MANDATORY_CHECKS if not checks[name]), None)


def make_dialogue(dialogue_id: str, parsed: Parsed, meta: dict) -> Dialogue:
    return Dialogue(dialogue_id, list(parsed.turns), synthetic=True, meta=meta)


def stable_seed(*parts: object) -> int:
    """A process-independent 31-bit seed from the parts (Python's hash() is salted per process)."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode()) & 0x7FFFFFFF
