"""`lumicrs` with ``backbone: prompt-lm``: LumiCRS as the paper builds it, on UniCRS (SYSTEMS.md §10): KGPrompt
deep prompts of a frozen causal LM, its pre-training and conversation stages unchanged, and in the
recommendation stage the run's loss (ACFL in the paper) over the catalogue plus the class-prototype term.

Why the catalogue and not all entities: ACFL and the other harness losses are defined over the catalogue's
item scores (``loss(logits [B, I], labels)``), so the recommendation head is the entity-tied head sliced to the
catalogue (``rec_softmax=items``). The k-means initialisation of the class prototypes runs at the start of
the recommendation stage, on the pre-trained item vectors, instead of on the random initial model.
"""
from __future__ import annotations

import inspect
from typing import Any

from harness.api import RunContext
from plugins.unicrs.model import UniCRS
from plugins.unicrs.presets import signature as unicrs_signature

from .model import ClassPrototypes


class LumiCRSPromptLM(ClassPrototypes, UniCRS):
    """UniCRS + K class prototypes; trained by the UniCRS stages (``prompt_stages``)."""

    def __init__(self, ctx: RunContext, prototypes: str | bool = "learned", num_prototypes: int = 50,
                 proto_weight: float = 0.1, proto_temperature: float = 0.1, kmeans_iterations: int = 25,
                 preset: str | None = "cpu", **settings: Any):
        if settings.get("rec_softmax") not in (None, "items"):  # None: the preset default (a filled-in config)
            raise ValueError("lumicrs with backbone prompt-lm trains the catalogue head with the run's loss: "
                             "rec_softmax must be 'items'")
        # None (the union signature's default in a filled-in config): the cpu preset, as recorded in details
        super().__init__(ctx, preset=preset or "cpu", **{**settings, "rec_softmax": "items"})
        self.init_class_prototypes(ctx, prototypes, num_prototypes, proto_weight, proto_temperature,
                                   kmeans_iterations, kmeans_now=False)

    def stage_started(self, stage: str) -> None:
        """Before the recommendation stage: k-means over the pre-trained body/tail item vectors."""
        if stage == "rec":
            self.fit_class_prototypes()

    def stage_parameters(self, stage: str) -> list[Any]:
        params = super().stage_parameters(stage)
        if stage == "rec" and self.class_prototypes is not None and self.class_prototypes.requires_grad:
            params.append(self.class_prototypes)
        return params

    def describe(self) -> dict[str, Any]:
        return {"backbone": "prompt-lm",
                **self.prototype_description("k-means over pre-trained body/tail item vectors"),
                "prompt_lm": UniCRS.describe(self)}


def _signature() -> inspect.Signature:
    own = list(inspect.signature(LumiCRSPromptLM.__init__).parameters.values())[1:-1]  # ctx ... preset
    return unicrs_signature(own)


LumiCRSPromptLM.__signature__ = _signature()
