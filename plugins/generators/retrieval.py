"""`retrieval`: answer with the response of the most similar training context, naming the recommender's item.

Why this baseline: it writes fluent, in-domain text at no training cost, so it shows what the conversation
metrics give for "a real human response, right or wrong for this context"; its only link to the run's
recommender is the item it names. Each ``<movie>`` of the retrieved turn's masked text becomes the name
(`harness.api.item_name`) of the recommender's top item, so the harness masks it back to
``<movie>`` for the text metrics while the recommendation metrics see which item was named.

Contexts are rendered as `plugins.models.text_encoder.context_text` renders them, so with the same encoder
settings the training contexts share cache entries with bert-rec and hybrid.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from harness.api import ConformanceError, ConvSample, Retriever, RunContext, Split, item_name
from harness.data import MOVIE_PLACEHOLDER

CONTEXT_FORMAT = "text_encoder.context_text: '<role>: <text>' lines, oldest first"


def contexts(split: Split, samples: Sequence[ConvSample]) -> list[str]:
    """The text before each sample's response turn."""
    from plugins.models.text_encoder import context_text

    return [context_text(split.context(sample)) for sample in samples]


def fill(masked: Sequence[str], names: Sequence[str | None]) -> list[str]:
    """Every ``<movie>`` of ``masked[i]`` replaced by ``names[i]`` (left as is where the name is None)."""
    return [text if name is None else text.replace(MOVIE_PLACEHOLDER, name) for text, name in zip(masked, names)]


class RetrievalGenerator:
    """Nearest-training-context response with the recommender's top item substituted (`ResponseGenerator`)."""

    def __init__(self, ctx: RunContext, retriever: str = "dense", retriever_params: dict[str, Any] | None = None):
        if ctx.registries is None:
            raise RuntimeError("the retrieval generator builds its retriever by name: ctx.registries is missing")
        component = ctx.registries.retrievers.get(retriever)
        self.retriever_name, self.retriever_params = retriever, dict(retriever_params or {})
        self.retriever = component.build(ctx, **self.retriever_params)
        if not isinstance(self.retriever, Retriever):
            raise ConformanceError(f"{component.describe()} does not implement Retriever (index, search)")
        self.titles = list(ctx.dataset.catalogue.titles)
        self.masked: np.ndarray | None = None  # [N] masked text of each indexed training response
        self.texts: np.ndarray | None = None  # [N] the same responses with titles in place
        self.corpus_size = 0

    def fit(self, train: Split, valid: Split) -> dict[str, Any]:
        """Index every training conversation sample's context (one encoder call); keep its response."""
        samples = [s for s in train.conv_samples if train.dialogues[s.dialogue_index].turns[s.turn].text.strip()]
        if not samples:
            raise RuntimeError("the retrieval generator found no non-empty training response to retrieve")
        turns = [train.dialogues[s.dialogue_index].turns[s.turn] for s in samples]
        self.texts = np.array([turn.text for turn in turns], dtype=object)
        self.masked = np.array([turn.masked_text or turn.text for turn in turns], dtype=object)
        self.retriever.index(contexts(train, samples))
        self.corpus_size = len(samples)
        synthetic = sum(1 for s in samples if train.dialogues[s.dialogue_index].synthetic)
        return {"indexed_contexts": len(samples), "synthetic_contexts": synthetic,
                "skipped_empty_responses": len(train.conv_samples) - len(samples)}

    def generate(self, split: Split, samples: Sequence[ConvSample], recommendations: np.ndarray | None) -> list[str]:
        """One search for all samples; the nearest training response, its ``<movie>`` slots naming the
        recommender's top item (the training turn's own text when nothing was recommended)."""
        if self.masked is None or self.texts is None:
            raise RuntimeError("RetrievalGenerator.generate called before fit()")
        if not samples:
            return []
        ids, _ = self.retriever.search(contexts(split, samples), 1)
        nearest = ids[:, 0]
        if (nearest < 0).any():
            raise RuntimeError("the retriever returned no neighbour for some context")
        if recommendations is None:
            return [str(text) for text in self.texts[nearest]]
        top = np.asarray(recommendations)[:, 0]
        names = {int(item): item_name(self.titles[int(item)]) for item in np.unique(top)}
        return fill(self.masked[nearest].tolist(), [names[int(item)] for item in top])

    def describe(self) -> dict[str, Any]:
        details = self.retriever.describe() if hasattr(self.retriever, "describe") else {}
        return {"retriever": self.retriever_name, "retriever_params": self.retriever_params,
                "retriever_details": details, "encoder": details.get("encoder"), "corpus": self.corpus_size,
                "context_format": CONTEXT_FORMAT, "neighbours": 1,
                "substitution": f"each {MOVIE_PLACEHOLDER} of the retrieved turn's masked text -> item_name(title) "
                                "of the recommender's top item; the turn's own text without recommendations"}
