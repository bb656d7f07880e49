"""`dcrs` with ``backbone: prompt-lm``: DCRS as the paper builds it on UniCRS (SYSTEMS.md §8, "injection for
recommendation"). KGPrompt is unchanged; the context entity list of every recommendation input (the
recommendation stage's training batches, validation and test) becomes

    (D4)  context entities ++ unique(demonstration context entities ++ demonstration label items),

truncated to the last ``max_context_entities`` (`demonstrations.merge_entities`), so the retrieved entities
are kept. Pre-training and the conversation prompt are UniCRS's (the paper's soft-token demonstrations of the
conversation model are not built on this backbone; `dcrs-lm` conditions the `lm` generator instead).
"""
from __future__ import annotations

import inspect
from typing import Any, Sequence

from harness.api import RunContext
from harness.data import RecSample, Split
from plugins.unicrs.model import UniCRS
from plugins.unicrs.presets import signature as unicrs_signature

from .demonstrations import PRESETS, DemonstrationIndex, merge_entities, rec_pool, resolve_retriever


class DCRSPromptLM(UniCRS):
    """UniCRS whose recommendation inputs carry the retrieved demonstrations' entities."""

    def __init__(self, ctx: RunContext, preset: str = "paper", retriever: str | None = None,
                 retriever_params: dict[str, Any] | None = None, demonstrations: int = 3,
                 backbone_preset: str | None = "cpu", **settings: Any):
        name = resolve_retriever(preset, "rec", retriever)
        super().__init__(ctx, preset=backbone_preset or "cpu", **settings)
        self.dcrs_preset = preset
        self.index = DemonstrationIndex(ctx, rec_pool(ctx.train), name, retriever_params, demonstrations, "rec")
        self.item_entity_ids = list(ctx.dataset.kg.item_entities)

    def input_entities(self, split: Split | None, contexts: Sequence[tuple[int, int]],
                       entities: Sequence[Sequence[int]], whole: Sequence[RecSample] = ()) -> list[Sequence[int]]:
        """Context entities ++ the demonstrations' entities, the last `max_context_entities` kept."""
        if split is None or not contexts:
            return list(entities)
        demos = self.index.for_contexts(split, contexts, [(s.dialogue_index, s.turn) for s in whole])
        limit = self.settings["max_context_entities"]
        return [merge_entities(e, self.index.retrieved_entities(row, self.item_entity_ids), limit)
                for e, row in zip(entities, demos.tolist())]

    def describe(self) -> dict[str, Any]:
        return {"backbone": "prompt-lm", "variant": self.index.name, "preset": self.dcrs_preset, "presets": PRESETS,
                "injection": "demonstration context entities and label items appended to the context entities, "
                             "truncated to the last max_context_entities (retrieved ones kept)",
                "demonstrations": self.index.describe(), "prompt_lm": UniCRS.describe(self)}


# what the backbone switch passes this class: its own parameters, then every UniCRS setting
DCRSPromptLM.__signature__ = unicrs_signature(list(inspect.signature(DCRSPromptLM.__init__).parameters.values())[1:-1])
