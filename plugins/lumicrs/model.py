"""`lumicrs`: a backbone plus LumiCRS class-prototype learning (SYSTEMS.md §10.4, reconstructed).

Backbones (``backbone``): ``hybrid`` (frozen sentence vector + R-GCN, `plugins.models.hybrid`, the default) or
``prompt-lm`` (UniCRS, KGPrompt deep prompts of a frozen causal LM, `plugins.unicrs`; LumiCRS as the paper
builds it, `plugins.lumicrs.prompt_lm`). The backbone is in the record (``details.backbone``) and in the
leaderboard row label.

K learned class prototypes P (default 50) are vectors in the representation space (not the exemplar
dialogues that the augmenters select, `plugins.lumicrs.exemplars`). Each training step assigns every
body/tail label y to its nearest class prototype a(y) = argmax_k cos(e_y, P_k) (detached) and adds

    λ_p · mean_{i: y_i ∈ body ∪ tail} [ CE(cos(u_i, P)/τ_p, a(y_i)) + CE(cos(e_{y_i}, P)/τ_p, a(y_i)) ]

to the recommendation loss (ACFL by default): body/tail contexts u_i and their item vectors e_y are pulled
to the same class prototype and away from the others; head samples never enter ("asymmetric"). Variants, as the
paper's Table 9: ``learned`` (k-means initialised, trained), ``kmeans-frozen``, ``random-frozen``, ``off``.

k-means runs once at construction (spherical, k-means++ seeding from the run seed) over the body/tail item
vectors of the initial model (`prompt-lm`: of the pre-trained model, at the start of the recommendation
stage), so it is deterministic for a given seed. Scoring is exactly the backbone's.
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


class ClassPrototypes:
    """Mixin: K class prototypes and the asymmetric contrastive term, on any backbone that exposes
    ``entity_vectors()``, ``represent(batch, entities)``, ``item_vectors(entities)``, ``logits(u, entities)``
    and ``direct_terms(logits, batch)`` (`hybrid` and `unicrs` do)."""

    def init_class_prototypes(self, ctx: RunContext, prototypes: str | bool, num_prototypes: int,
                              proto_weight: float, proto_temperature: float, kmeans_iterations: int,
                              kmeans_now: bool = True) -> None:
        """`kmeans_now=False` leaves the k-means initialisation to `fit_class_prototypes` (a backbone with
        pre-training runs it on the pre-trained item vectors)."""
        if prototypes is False or prototypes is None:
            prototypes = "off"  # YAML 1.1 reads a bare `off` as false
        if prototypes not in VARIANTS:
            raise ValueError(f"lumicrs prototypes must be one of {VARIANTS}, got {prototypes!r}")
        if num_prototypes < 1 or proto_temperature <= 0 or proto_weight < 0:
            raise ValueError("lumicrs needs num_prototypes >= 1, proto_temperature > 0 and proto_weight >= 0")
        self.variant, self.kmeans_iterations, self.prototype_seed = prototypes, kmeans_iterations, int(ctx.seed)
        self.class_prototype_weight, self.class_prototype_temperature = float(proto_weight), float(proto_temperature)
        tiers = np.asarray(ctx.stats.tiers)
        segmented = (tiers == "body") | (tiers == "tail")
        self.register_buffer("segmented", torch.from_numpy(segmented), persistent=False)
        self.segment_sizes = {"body": int((tiers == "body").sum()), "tail": int((tiers == "tail").sum())}
        self.num_class_prototypes = min(num_prototypes, int(segmented.sum())) if prototypes != "off" else 0
        if self.num_class_prototypes == 0:
            self.class_prototypes = None
            return
        generator = torch.Generator().manual_seed(self.prototype_seed * 7919 + 17)
        width = None
        if prototypes == "random-frozen" or not kmeans_now:
            with torch.no_grad():
                width = int(self.item_vectors().shape[1])
        if prototypes == "random-frozen":
            initial = F.normalize(torch.randn(self.num_class_prototypes, width, generator=generator), dim=-1)
        elif kmeans_now:
            initial = self._kmeans(generator)
        else:
            initial = torch.zeros(self.num_class_prototypes, width)  # set by fit_class_prototypes
        if prototypes == "learned":
            self.class_prototypes = nn.Parameter(initial.clone())
        else:
            self.register_buffer("class_prototypes", initial.clone())

    def _kmeans(self, generator: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            was_training = self.training
            self.eval()
            vectors = self.item_vectors()[torch.from_numpy(np.flatnonzero(self.segmented.cpu().numpy()))]
            self.train(was_training)
        return spherical_kmeans(vectors.detach().float().cpu(), self.num_class_prototypes, self.kmeans_iterations,
                                generator)

    def fit_class_prototypes(self) -> None:
        """(Re)run the k-means initialisation on the current item vectors (k-means variants only)."""
        if self.class_prototypes is None or self.variant == "random-frozen":
            return
        generator = torch.Generator().manual_seed(self.prototype_seed * 7919 + 17)
        with torch.no_grad():
            self.class_prototypes.copy_(self._kmeans(generator).to(self.class_prototypes.device))

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
        logits = self.direct_terms(self.logits(u, entities), batch)  # exactly the backbone's forward
        loss = loss_fn(logits.float(), labels)
        if self.class_prototypes is None or self.class_prototype_weight == 0.0:
            return loss  # identical to training the backbone with the same loss
        contrastive = self.class_prototype_loss(u.float(), self.item_vectors(entities).float(), labels)
        return loss + self.class_prototype_weight * contrastive

    def prototype_description(self, init: str) -> dict[str, Any]:
        return {"class_prototypes": {"variant": self.variant, "count": self.num_class_prototypes,
                                     "weight": self.class_prototype_weight,
                                     "temperature": self.class_prototype_temperature,
                                     "init": None if self.variant == "off" else
                                     "random unit vectors" if self.variant == "random-frozen" else init},
                "segment_items": self.segment_sizes,
                "loss_formula": "reconstructed (SYSTEMS.md §10.4); the paper gives none"}


class LumiCRS(ClassPrototypes, Hybrid):
    """hybrid + K learned class prototypes and the asymmetric class-prototype contrastive term in
    `training_loss`."""

    # The parameter names `prototypes`, `num_prototypes`, `proto_weight` and `proto_temperature` are kept as
    # they are: committed recipes (benchmarks/lumicrs_*.yaml) and records (results/runs/*/record.json) use
    # them. All four are about the class prototypes.
    def __init__(self, ctx: RunContext, prototypes: str | bool = "learned", num_prototypes: int = 50,
                 proto_weight: float = 0.1, proto_temperature: float = 0.1, kmeans_iterations: int = 25,
                 **hybrid: Any):
        super().__init__(ctx, **hybrid)
        self.init_class_prototypes(ctx, prototypes, num_prototypes, proto_weight, proto_temperature,
                                   kmeans_iterations)

    def describe(self) -> dict[str, Any]:
        return {"backbone": "hybrid", **self.prototype_description("k-means over body/tail item vectors")}


def _hybrid_signature() -> inspect.Signature:
    own = list(inspect.signature(LumiCRS.__init__).parameters.values())[1:-1]  # ctx + LumiCRS's own
    base = list(inspect.signature(Hybrid.__init__).parameters.values())[2:]  # hybrid's, after self and ctx
    return inspect.Signature(own + base)


LumiCRS.__signature__ = _hybrid_signature()
BACKBONES = ("hybrid", "prompt-lm")


def build_lumicrs(ctx: RunContext, backbone: str = "hybrid", **params: Any) -> Any:
    """The `lumicrs` factory: the class-prototype model on the chosen backbone. A parameter of the other
    backbone is refused by name (the signature below accepts both backbones' parameters)."""
    if backbone not in BACKBONES:
        raise ValueError(f"lumicrs backbone must be one of {BACKBONES}, got {backbone!r}")
    if backbone == "hybrid":
        factory: Any = LumiCRS
    else:
        from .prompt_lm import LumiCRSPromptLM

        factory = LumiCRSPromptLM
    from plugins.models.backbones import backbone_params

    accepted = list(inspect.signature(factory).parameters)[1:]
    return factory(ctx, **backbone_params("lumicrs", backbone, params, accepted, build_lumicrs.__signature__))


def _lumicrs_signature() -> inspect.Signature:
    """ctx, backbone, then every parameter either backbone takes (names and types checked by the harness)."""
    from plugins.unicrs.presets import signature as unicrs_signature

    head = list(inspect.signature(build_lumicrs).parameters.values())[:2]
    hybrid = list(LumiCRS.__signature__.parameters.values())[1:]
    seen = {p.name for p in head + hybrid}
    prompt = [p for p in unicrs_signature([]).parameters.values() if p.name not in seen]
    keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in hybrid + prompt]
    return inspect.Signature(head + keyword + [inspect.Parameter("preset", inspect.Parameter.KEYWORD_ONLY,
                                                                 default=None, annotation=str | None)])


build_lumicrs.__signature__ = _lumicrs_signature()
