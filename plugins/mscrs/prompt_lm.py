"""`mscrs` with ``backbone: prompt-lm``: MSCRS as the paper builds it, on UniCRS (SYSTEMS.md §9): the semantic
graphs refine each KGPrompt copy's R-GCN output N^(1) into Ê_final, which then takes N^(1)'s place in the
prompt encoder (H = Ê_final + MLP_e(Ê_final)), so the fused table drives the context entities of the deep
prompt and the entity-tied recommendation head alike, in all three UniCRS stages. The item texts of the text graph are embedded by the cached sentence encoder
(all-MiniLM-L6-v2, mean pooling), as on the hybrid, whatever text encoder the prompt's preset uses.

The fuse loss (Eq. 18, weight δ) contrasts the context's text view T_s (the mean of KGPrompt's token states T
over the context tokens) with its entity view Ṽ_s (the mean of the context entities' rows E = H·W_E), both in
the decoder's width; it is added to the recommendation stage's loss.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

from harness.api import RunContext
from plugins.models.text_encoder import DEFAULT_MODEL, TextEncoder
from plugins.unicrs.model import UniCRS
from plugins.unicrs.presets import signature as unicrs_signature

from .views import SemanticGraphs


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x [B, n, d] over the positions where mask [B, n] is set (0 where none is)."""
    weights = mask.to(x.dtype)[:, :, None]
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class MSCRSPromptLM(SemanticGraphs, UniCRS):
    """UniCRS whose KGPrompt copies read the MSCRS-fused entity table; trained by the UniCRS stages."""

    def __init__(self, ctx: RunContext, preset: str = "paper", k: int | None = None, threshold: int = 1,
                 lightgcn_layers: int = 3, lam: float = 0.5, image_features: str | None = None,
                 use_collab: bool = True, use_text_graph: bool = True, use_image: bool = True,
                 fuse_weight: float = 1e-4, fuse_temperature: float = 0.07,
                 prompt_preset: str | None = "cpu", **settings: Any):
        # None (the union signature's default in a filled-in config): the cpu preset, as recorded in details
        super().__init__(ctx, preset=prompt_preset or "cpu", **settings)
        items = TextEncoder(DEFAULT_MODEL, 256, ctx.device, ctx.cache_dir)  # the cached sentence encoder
        self.build_graphs(ctx, items.encode, DEFAULT_MODEL, preset, k, threshold, lightgcn_layers, lam,
                          image_features, use_collab, use_text_graph, use_image, fuse_weight, fuse_temperature)

    def entity_vectors(self, copy: str = "rec") -> torch.Tensor:
        """H [K + 1, d_e] of a prompt copy from the fused table: Ê_final + MLP_e(Ê_final), plus the padding row."""
        if not self.training and copy in self._entities:
            return self._entities[copy]
        prompt = self.prompts[copy]
        n1 = prompt.kg_encoder()
        h = prompt.entity_mlp(self.fused_table(n1, prompt.kg_encoder.embedding.weight))
        table = torch.cat([h, h.new_zeros(1, h.shape[1])])
        if not self.training:
            self._entities[copy] = table
        return table

    def training_loss(self, batch: dict[str, Any], labels: torch.Tensor, loss: Any) -> torch.Tensor:
        """The UniCRS recommendation loss + δ·L_fuse between the text and entity views of each context."""
        total = super().training_loss(batch, labels, loss)
        if not self.fuse_weight:
            return total
        prompt = self.prompts["rec"]
        states, mask = self.text_states(batch)
        text = masked_mean(prompt.tokens(states), mask)
        entities = prompt.project(self.entity_vectors("rec")[batch["entities"]])
        pooled = masked_mean(entities, batch["entity_mask"])
        return total + self.fuse_weight * self.fuse_loss(text, pooled, batch["entity_mask"].any(dim=1))

    def describe(self) -> dict[str, Any]:
        return {"backbone": "prompt-lm", **self.graph_details, "prompt_lm": UniCRS.describe(self)}


def _signature() -> inspect.Signature:
    own = list(inspect.signature(MSCRSPromptLM.__init__).parameters.values())[1:-1]  # ctx ... prompt_preset
    return unicrs_signature(own)


MSCRSPromptLM.__signature__ = _signature()
