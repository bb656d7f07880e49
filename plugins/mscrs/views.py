"""MSCRS's semantic graphs as a mixin over any backbone with an R-GCN entity table (SYSTEMS.md §9): the
collaborative, text and image graphs (built once per dataset fingerprint and cached), their LightGCN
propagation, the fusion into the final entity table, and the contrastive fuse loss (Eq. 18).
`plugins.mscrs.model` puts them on the `hybrid` backbone, `plugins.mscrs.prompt_lm` on UniCRS's KGPrompt; the
equations are written out in `plugins.mscrs.model`'s docstring.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from harness.api import RunContext

from . import graphs

DEFAULT_K = {"redial": 20, "inspired": 10}  # the paper's per-dataset kNN sizes
PRESETS = ("paper", "released")


class SemanticGraphs:
    """Mixin for an `nn.Module` backbone that has `item_entities` (catalogue item -> entity id)."""

    item_entities: torch.Tensor

    def build_graphs(self, ctx: RunContext, encode_items: Callable[[Sequence[str]], np.ndarray], text_encoder: str,
                     preset: str, k: int | None, threshold: int, lightgcn_layers: int, lam: float,
                     image_features: str | None, use_collab: bool, use_text_graph: bool, use_image: bool,
                     fuse_weight: float, fuse_temperature: float) -> None:
        """Check the settings, build (or read from the cache) every graph switched on, and keep each as a
        normalised sparse adjacency buffer (None when off). `encode_items` embeds the item texts."""
        from torch_geometric.nn import LGConv

        if preset not in PRESETS:
            raise ValueError(f"mscrs: preset must be one of {PRESETS}, got {preset!r}")
        if not 0.0 <= lam <= 1.0 or lightgcn_layers < 1 or threshold < 1:
            raise ValueError("mscrs: lam must lie in [0, 1], lightgcn_layers and threshold must be >= 1")
        dataset = ctx.dataset
        self.graph_preset, self.layers, self.lam = preset, lightgcn_layers, lam
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
            text = self._item_graph(ctx.cache_dir, "text", fingerprint, encode_items(texts))
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
        self.graph_details = details
        sizes = {"collab_edges": dataset.kg.num_entities, "text_edges": dataset.num_items,
                 "image_edges": dataset.num_items}
        for name, edges in (("collab_edges", collab), ("text_edges", text), ("image_edges", image)):
            self.register_buffer(name, None if edges is None else  # type: ignore[attr-defined]
                                 graphs.normalized_adjacency(edges, sizes[name], ctx.device), persistent=False)

    def _item_graph(self, cache_dir: Path, view: str, fingerprint: str, features: np.ndarray) -> np.ndarray:
        edges = graphs.cached_edges(cache_dir, [view, fingerprint, graphs.digest(features), str(self.k)],
                                    lambda: graphs.knn_edges(features, self.k))
        return edges if self.graph_preset == "released" else graphs.symmetrised(edges)

    def propagate(self, x: torch.Tensor, adjacency: torch.Tensor) -> list[torch.Tensor]:
        """[E^(0), ..., E^(L)]: LightGCN layers E^(l+1) = D^-1/2 A D^-1/2 E^(l) (§1.4)."""
        layers = [x]
        for _ in range(self.layers):
            layers.append(self.propagate_layer(layers[-1], adjacency))
        return layers

    def fused_table(self, n1: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """Ê_final [num_entities, dim] from the R-GCN output N^(1); `raw` is the R-GCN's input table, the
        start of the collaborative view in the released ReDial code."""
        released = self.graph_preset == "released"
        alpha = n1
        if self.collab_edges is not None:
            c = self.propagate(raw if self.released_redial else n1, self.collab_edges)
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

    def fuse_loss(self, text: torch.Tensor, pooled: torch.Tensor, has_entities: torch.Tensor) -> torch.Tensor:
        """Eq. 18 (paper) or the released one-directional InfoNCE, over contexts that mention entities."""
        t = F.normalize(text[has_entities], dim=-1)
        v = F.normalize(pooled[has_entities], dim=-1)
        if t.shape[0] < 2:
            return text.new_zeros(())
        tau = self.fuse_temperature
        if self.graph_preset == "released":
            return F.cross_entropy(t @ v.T / tau, torch.arange(t.shape[0], device=t.device))
        positive = (t * v).sum(-1, keepdim=True) / tau
        eye = torch.eye(t.shape[0], dtype=torch.bool, device=t.device)
        text_side = torch.cat([positive, (t @ t.T / tau).masked_fill(eye, float("-inf"))], dim=1)
        entity_side = torch.cat([positive, (v @ v.T / tau).masked_fill(eye, float("-inf"))], dim=1)
        return -((positive.squeeze(1) - text_side.logsumexp(1)) + (positive.squeeze(1) - entity_side.logsumexp(1))).mean()
