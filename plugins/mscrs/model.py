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

Ablations (the paper's Figure 4): ``use_collab``, ``use_text_graph``, ``use_image`` switch each graph off;
all three off leaves the hybrid backbone plus the fuse loss. The image view needs ``image_features`` (a
``.npy`` [num_items, d] matrix); without one it is off (λ = 1) and `describe()` says so.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness.api import RunContext
from plugins.models.hybrid import Hybrid
from plugins.models.text_encoder import DEFAULT_MODEL

from . import graphs

DEFAULT_K = {"redial": 20, "inspired": 10}  # the paper's per-dataset kNN sizes
PRESETS = ("paper", "released")


class MSCRS(Hybrid):
    def __init__(self, ctx: RunContext, preset: str = "paper", k: int | None = None, threshold: int = 1,
                 lightgcn_layers: int = 3, lam: float = 0.5, image_features: str | None = None,
                 use_collab: bool = True, use_text_graph: bool = True, use_image: bool = True,
                 fuse_weight: float = 1e-4, fuse_temperature: float = 0.07, dim: int = 128,
                 text_encoder: str = DEFAULT_MODEL, max_tokens: int = 256, kg_layers: int = 1, num_bases: int = 8,
                 min_relation_edges: int | None = 1000, max_context_entities: int = 32, dropout: float = 0.1,
                 item_bias: str = "labels", text_skip: bool = False, mention_bias: int = 0):
        if preset not in PRESETS:
            raise ValueError(f"mscrs: preset must be one of {PRESETS}, got {preset!r}")
        if not 0.0 <= lam <= 1.0 or lightgcn_layers < 1 or threshold < 1:
            raise ValueError("mscrs: lam must lie in [0, 1], lightgcn_layers and threshold must be >= 1")
        super().__init__(ctx, dim=dim, text_encoder=text_encoder, max_tokens=max_tokens, kg_layers=kg_layers,
                         num_bases=num_bases, min_relation_edges=min_relation_edges,
                         max_context_entities=max_context_entities, dropout=dropout, item_bias=item_bias,
                         text_skip=text_skip, mention_bias=mention_bias)
        from torch_geometric.nn import LGConv

        dataset = ctx.dataset
        self.preset, self.layers, self.lam = preset, lightgcn_layers, lam
        self.fuse_weight, self.fuse_temperature = fuse_weight, fuse_temperature
        self.released_redial = preset == "released" and dataset.name == "redial"
        self.k = k if k is not None else DEFAULT_K.get(dataset.name, 10)
        self.propagate_layer = LGConv(normalize=False)  # the adjacency below is normalised once
        fingerprint = dataset.fingerprint or dataset.name
        details: dict[str, Any] = {"preset": preset, "k": self.k, "threshold": threshold, "lambda": lam,
                                   "lightgcn_layers": lightgcn_layers, "fuse_weight": fuse_weight,
                                   "fuse_temperature": fuse_temperature}

        collab = None
        if use_collab:
            sets = graphs.conversation_entity_sets(ctx.train)  # ctx.train: after augmentation
            digest = graphs.digest(np.fromiter((e for s in sets for e in (*s, -1)), dtype=np.int64))
            collab = graphs.cached_edges(ctx.cache_dir, ["collab", fingerprint, digest, str(threshold)],
                                         lambda: graphs.co_mention_edges(sets, dataset.kg.num_entities, threshold))
        details["collab_edges"] = None if collab is None else int(collab.shape[1])

        text = None
        if use_text_graph:
            texts = graphs.item_texts(dataset)
            features = self.text.encode(texts)
            text = self._item_graph(ctx.cache_dir, "text", fingerprint, features)
            details["item_text"] = {"template": graphs.ITEM_TEXT_TEMPLATE, "version": graphs.ITEM_TEXT_VERSION,
                                    "encoder": text_encoder, "example": texts[0]}
        details["text_edges"] = None if text is None else int(text.shape[1])

        image = None
        if use_image and image_features is not None:
            matrix = graphs.load_item_features(Path(image_features), dataset.num_items)
            image = self._item_graph(ctx.cache_dir, "image", fingerprint, matrix)
            details["image_features"] = {"path": str(image_features), "shape": list(matrix.shape),
                                         "sha256": graphs.digest(matrix)[:16]}
        details["image_edges"] = None if image is None else int(image.shape[1])
        details["image_view"] = "on" if image is not None else \
            ("off: no image_features given (lambda = 1)" if use_image else "off (ablation)")
        details["modal_views_added"] = not self.released_redial and (text is not None or image is not None)
        self.details = details
        sizes = {"collab_edges": dataset.kg.num_entities, "text_edges": dataset.num_items,
                 "image_edges": dataset.num_items}
        for name, edges in (("collab_edges", collab), ("text_edges", text), ("image_edges", image)):
            self.register_buffer(name, None if edges is None else
                                 graphs.normalized_adjacency(edges, sizes[name], ctx.device), persistent=False)

    def _item_graph(self, cache_dir: Path, view: str, fingerprint: str, features: np.ndarray) -> np.ndarray:
        edges = graphs.cached_edges(cache_dir, [view, fingerprint, graphs.digest(features), str(self.k)],
                                    lambda: graphs.knn_edges(features, self.k))
        return edges if self.preset == "released" else graphs.symmetrised(edges)

    def describe(self) -> dict[str, Any]:
        return dict(self.details)

    def propagate(self, x: torch.Tensor, adjacency: torch.Tensor) -> list[torch.Tensor]:
        """[E^(0), ..., E^(L)]: LightGCN layers E^(l+1) = D^-1/2 A D^-1/2 E^(l) (§1.4)."""
        layers = [x]
        for _ in range(self.layers):
            layers.append(self.propagate_layer(layers[-1], adjacency))
        return layers

    def fused_table(self, n1: torch.Tensor) -> torch.Tensor:
        """Ê_final [num_entities, dim] from the R-GCN output N^(1) (module docstring)."""
        released = self.preset == "released"
        alpha = n1
        if self.collab_edges is not None:
            start = self.kg_encoder.embedding.weight if self.released_redial else n1
            c = self.propagate(start, self.collab_edges)
            alpha = (sum(c[1:]) + n1) / (len(c)) if released else (torch.stack(c).mean(0) + n1) / 2
        views = {}
        items = n1[self.item_entities]
        for name, edges in (("text", self.text_edges), ("image", self.image_edges)):
            if edges is not None:
                layers = self.propagate(items, edges)
                views[name] = (layers[1] + layers[2]) / 2 if released and len(layers) > 2 else torch.stack(layers).mean(0)
        if self.released_redial or not views:
            return alpha
        if len(views) == 2:
            modal = self.lam * views["text"] + (1 - self.lam) * views["image"]
        else:
            modal = next(iter(views.values()))
        return alpha.index_add(0, self.item_entities, modal)

    def entity_vectors(self) -> torch.Tensor:
        if self._entities is not None and not self.training:
            return self._entities
        h = self.fused_table(self.kg_encoder())
        h = torch.cat([h, h.new_zeros(1, h.shape[1])])
        if not self.training:
            self._entities = h
        return h

    def fuse_loss(self, text: torch.Tensor, pooled: torch.Tensor, has_entities: torch.Tensor) -> torch.Tensor:
        """Eq. 18 (paper) or the released one-directional InfoNCE, over contexts that mention entities."""
        t = F.normalize(text[has_entities], dim=-1)
        v = F.normalize(pooled[has_entities], dim=-1)
        if t.shape[0] < 2:
            return text.new_zeros(())
        tau = self.fuse_temperature
        if self.preset == "released":
            return F.cross_entropy(t @ v.T / tau, torch.arange(t.shape[0], device=t.device))
        positive = (t * v).sum(-1, keepdim=True) / tau
        eye = torch.eye(t.shape[0], dtype=torch.bool, device=t.device)
        text_side = torch.cat([positive, (t @ t.T / tau).masked_fill(eye, float("-inf"))], dim=1)
        entity_side = torch.cat([positive, (v @ v.T / tau).masked_fill(eye, float("-inf"))], dim=1)
        return -((positive.squeeze(1) - text_side.logsumexp(1)) + (positive.squeeze(1) - entity_side.logsumexp(1))).mean()

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
