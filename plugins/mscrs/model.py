"""`mscrs`: multimodal semantic graphs on the `hybrid` backbone (Wei et al., SIGIR 2025; SYSTEMS.md §9).

The hybrid's R-GCN entity table N^(1) is refined by three graphs before the context is pooled and items are
scored (`entity_vectors` returns the fused table, so the hybrid's pooling and entity-tied item head use it):

* collaborative (entity co-mentions in the training conversations, after augmentation), LightGCN from
  E_c^(0) = N^(1):                                  Ê_c = mean_{l=0..L} E_c^(l)
* text and image (item kNN graphs), LightGCN from the items' rows of N^(1):  Ê_t, Ê_v = mean_{l=0..L} E^(l)
* fusion:  Ê_m = λ·Ê_t + (1 − λ)·Ê_v;  Ê_α = mean(Ê_c, N^(1));  Ê_final = Ê_α with item rows + Ê_m.

Training adds the contrastive fuse loss between the context text T_s and the pooled entity view Ṽ_s
(Eq. 18, weight δ, temperature τ):
    L_fuse = −[log(exp(T_s·Ṽ_s/τ) / Σ_γ exp(T_s·T_γ/τ)) + log(exp(Ṽ_s·T_s/τ) / Σ_γ exp(Ṽ_s·Ṽ_γ/τ))]
with in-batch negatives γ ≠ s and the positive in each denominator, on cosine-normalised vectors.

Presets: ``paper`` (the equations above, undirected kNN graphs) and ``released`` (the released code's
per-dataset behaviour, §9 "where the released code differs": collaborative E = (c₁ + c₂ + c₃ + N^(1))/4
with c₁ from the raw node table on ReDial; t = (t₁ + t₂)/2; directed kNN edges; on ReDial the modal views are
computed but not added; one-directional InfoNCE cos(T_i, V_j)/τ).

Backbones (``backbone``): ``hybrid`` (this module, the default) or ``prompt-lm``: the fused table Ê_final
feeds UniCRS's KGPrompt as its entity table, as the paper builds MSCRS (`plugins.mscrs.prompt_lm`). The graphs,
their fusion and the fuse loss are one mixin over both (`plugins.mscrs.views`).

Ablations (the paper's Figure 4): ``use_collab``, ``use_text_graph``, ``use_image`` switch each graph off;
all three off leaves the hybrid backbone plus the fuse loss. The image view needs ``image_features`` (a
``.npy`` [num_items, d] matrix); without one it is off (λ = 1) and `describe()` says so.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

from harness.api import RunContext
from plugins.models.hybrid import Hybrid
from plugins.models.text_encoder import DEFAULT_MODEL
from plugins.unicrs.switch import build_on_backbone, union_signature

from .views import SemanticGraphs


class MSCRS(SemanticGraphs, Hybrid):
    """MSCRS on the `hybrid` backbone: the hybrid's pooling and entity-tied head read the fused table."""

    def __init__(self, ctx: RunContext, preset: str = "paper", k: int | None = None, threshold: int = 1,
                 lightgcn_layers: int = 3, lam: float = 0.5, image_features: str | None = None,
                 use_collab: bool = True, use_text_graph: bool = True, use_image: bool = True,
                 fuse_weight: float = 1e-4, fuse_temperature: float = 0.07, dim: int = 128,
                 text_encoder: str = DEFAULT_MODEL, max_tokens: int = 256, kg_layers: int = 1, num_bases: int = 8,
                 min_relation_edges: int | None = 1000, max_context_entities: int = 32, dropout: float = 0.1,
                 item_bias: str = "labels", text_skip: bool = False, mention_bias: int = 0):
        super().__init__(ctx, dim=dim, text_encoder=text_encoder, max_tokens=max_tokens, kg_layers=kg_layers,
                         num_bases=num_bases, min_relation_edges=min_relation_edges,
                         max_context_entities=max_context_entities, dropout=dropout, item_bias=item_bias,
                         text_skip=text_skip, mention_bias=mention_bias)
        self.build_graphs(ctx, self.text.encode, text_encoder, preset, k, threshold, lightgcn_layers, lam,
                          image_features, use_collab, use_text_graph, use_image, fuse_weight, fuse_temperature)

    def describe(self) -> dict[str, Any]:
        return dict(self.graph_details)

    def entity_vectors(self) -> torch.Tensor:
        if self._entities is not None and not self.training:
            return self._entities
        h = self.fused_table(self.kg_encoder(), self.kg_encoder.embedding.weight)
        h = torch.cat([h, h.new_zeros(1, h.shape[1])])
        if not self.training:
            self._entities = h
        return h

    def training_loss(self, batch: dict[str, Any], labels: torch.Tensor, loss: Any) -> torch.Tensor:
        """Recommendation CE (the run's loss) over the fused head + δ·L_fuse."""
        entities = self.entity_vectors()
        text = self.text_proj(self.dropout(batch["text"]))
        pooled = self.pooling(entities[batch["entities"]], batch["mask"])
        logits = self.direct_terms(self.logits(self.fusion(text, pooled), entities), batch)
        total = loss(logits.float(), labels)
        if self.fuse_weight:
            total = total + self.fuse_weight * self.fuse_loss(text, pooled, batch["mask"].any(dim=1))
        return total


def _prompt_lm() -> Any:
    from .prompt_lm import MSCRSPromptLM

    return MSCRSPromptLM


def build_mscrs(ctx: RunContext, backbone: str = "hybrid", **params: Any) -> Any:
    """The `mscrs` factory: the semantic graphs on the chosen backbone (`plugins.unicrs.switch`). ``preset``
    is MSCRS's (paper | released) on both; ``prompt_preset`` is the UniCRS preset on ``prompt-lm``."""
    return build_on_backbone("mscrs", backbone, {"hybrid": lambda: MSCRS, "prompt-lm": _prompt_lm},
                             build_mscrs.__signature__, ctx, params)


build_mscrs.__signature__ = union_signature(
    list(inspect.signature(build_mscrs).parameters.values())[:2],  # ctx, backbone
    list(inspect.signature(MSCRS).parameters.values())[1:],
    [inspect.Parameter("prompt_preset", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=str | None)])
