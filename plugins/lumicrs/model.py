"""`lumicrs`: the `hybrid` backbone plus LumiCRS class-prototype learning (SYSTEMS.md §10.4, reconstructed).

K learned class prototypes P (default 50) are vectors in the representation space (not the exemplar
dialogues that the augmenters select, `plugins.lumicrs.exemplars`). Each training step assigns every
body/tail label y to its nearest class prototype a(y) = argmax_k cos(e_y, P_k) (detached) and adds

    λ_p · mean_{i: y_i ∈ body ∪ tail} [ CE(cos(u_i, P)/τ_p, a(y_i)) + CE(cos(e_{y_i}, P)/τ_p, a(y_i)) ]

to the recommendation loss (ACFL by default): body/tail contexts u_i and their item vectors e_y are pulled
to the same class prototype and away from the others; head samples never enter ("asymmetric"). Variants, as the
paper's Table 9: ``learned`` (k-means initialised, trained), ``kmeans-frozen``, ``random-frozen``, ``off``.

k-means runs once at construction (spherical, k-means++ seeding from the run seed) over the body/tail item
vectors of the initial model, so it is deterministic for a given seed. Scoring is exactly `hybrid`'s.
"""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness.api import RunContext
from plugins.models.hybrid import Hybrid

VARIANTS = ("learned", "kmeans-frozen", "random-frozen", "off")


def spherical_kmeans(x: torch.Tensor, k: int, iterations: int, generator: torch.Generator) -> torch.Tensor:
    """[k, d] unit centroids of the unit rows of `x` (k-means++ seeding, cosine assignment)."""
    x = F.normalize(x, dim=-1)
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    centroids = [x[first]]
    distance = 1.0 - x @ x[first]
    for _ in range(1, k):
        weights = distance.clamp(min=0) + 1e-12
        chosen = int(torch.multinomial(weights, 1, generator=generator))
        centroids.append(x[chosen])
        distance = torch.minimum(distance, 1.0 - x @ x[chosen])
    c = torch.stack(centroids)
    for _ in range(iterations):
        assign = (x @ c.T).argmax(dim=1)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k)
        c = torch.where(counts[:, None] > 0, F.normalize(sums, dim=-1), c)  # empty clusters keep their centre
    return c


class LumiCRS(Hybrid):
    """hybrid + K learned class prototypes and the asymmetric class-prototype contrastive term in
    `training_loss`."""

    # The parameter names `prototypes`, `num_prototypes`, `proto_weight` and `proto_temperature` are kept as
    # they are: committed recipes (benchmarks/lumicrs_*.yaml) and records (results/runs/*/record.json) use
    # them. All four are about the class prototypes.
    def __init__(self, ctx: RunContext, prototypes: str | bool = "learned", num_prototypes: int = 50,
                 proto_weight: float = 0.1, proto_temperature: float = 0.1, kmeans_iterations: int = 25,
                 **hybrid: Any):
        super().__init__(ctx, **hybrid)
        if prototypes is False or prototypes is None:
            prototypes = "off"  # YAML 1.1 reads a bare `off` as false
        if prototypes not in VARIANTS:
            raise ValueError(f"lumicrs prototypes must be one of {VARIANTS}, got {prototypes!r}")
        if num_prototypes < 1 or proto_temperature <= 0 or proto_weight < 0:
            raise ValueError("lumicrs needs num_prototypes >= 1, proto_temperature > 0 and proto_weight >= 0")
        self.variant = prototypes
        self.class_prototype_weight, self.class_prototype_temperature = float(proto_weight), float(proto_temperature)
        tiers = np.asarray(ctx.stats.tiers)
        segmented = (tiers == "body") | (tiers == "tail")
        self.register_buffer("segmented", torch.from_numpy(segmented), persistent=False)
        self.segment_sizes = {"body": int((tiers == "body").sum()), "tail": int((tiers == "tail").sum())}
        self.num_class_prototypes = min(num_prototypes, int(segmented.sum())) if prototypes != "off" else 0
        if self.num_class_prototypes == 0:
            self.class_prototypes = None
            return
        generator = torch.Generator().manual_seed(int(ctx.seed) * 7919 + 17)
        if prototypes == "random-frozen":
            initial = F.normalize(torch.randn(self.num_class_prototypes, self.head.items.shape[1],
                                              generator=generator), dim=-1)
        else:
            with torch.no_grad():
                was_training = self.training
                self.eval()
                vectors = self.item_vectors()[torch.from_numpy(np.flatnonzero(segmented))]
                self.train(was_training)
            initial = spherical_kmeans(vectors.detach().float().cpu(), self.num_class_prototypes,
                                       kmeans_iterations, generator)
        if prototypes == "learned":
            self.class_prototypes = nn.Parameter(initial.clone())
        else:
            self.register_buffer("class_prototypes", initial.clone())

    def class_prototype_loss(self, u: torch.Tensor, item_vectors: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The asymmetric contrastive term for one batch (0 when no label is body/tail)."""
        keep = self.segmented[labels]
        if self.class_prototypes is None or not bool(keep.any()):
            return u.new_zeros(())
        p = F.normalize(self.class_prototypes, dim=-1)
        z = F.normalize(u[keep], dim=-1)
        e = F.normalize(item_vectors[labels[keep]], dim=-1)
        item_logits = e @ p.T / self.class_prototype_temperature
        assign = item_logits.detach().argmax(dim=1)
        return F.cross_entropy(z @ p.T / self.class_prototype_temperature, assign) + \
            F.cross_entropy(item_logits, assign)

    def training_loss(self, batch: dict[str, Any], labels: torch.Tensor, loss_fn: Any) -> torch.Tensor:
        entities = self.entity_vectors() if self.use_entities else None
        u = self.represent(batch, entities)
        logits = self.direct_terms(self.logits(u, entities), batch)  # exactly Hybrid.forward
        loss = loss_fn(logits.float(), labels)
        if self.class_prototypes is None or self.class_prototype_weight == 0.0:
            return loss  # identical to training `hybrid` with the same loss
        contrastive = self.class_prototype_loss(u.float(), self.item_vectors(entities).float(), labels)
        return loss + self.class_prototype_weight * contrastive

    def describe(self) -> dict[str, Any]:
        init = {"learned": "k-means over body/tail item vectors", "kmeans-frozen": "k-means over body/tail item "
                "vectors", "random-frozen": "random unit vectors", "off": None}[self.variant]
        return {"class_prototypes": {"variant": self.variant, "count": self.num_class_prototypes,
                                     "weight": self.class_prototype_weight,
                                     "temperature": self.class_prototype_temperature, "init": init},
                "segment_items": self.segment_sizes,
                "loss_formula": "reconstructed (SYSTEMS.md §10.4); the paper gives none"}


def _signature() -> inspect.Signature:
    own = list(inspect.signature(LumiCRS.__init__).parameters.values())[1:-1]  # ctx + LumiCRS's own
    base = list(inspect.signature(Hybrid.__init__).parameters.values())[2:]  # hybrid's, after self and ctx
    return inspect.Signature(own + base)


LumiCRS.__signature__ = _signature()
