"""The backbone switch: one registered model (`lumicrs`, `mscrs`, `dcrs`) on either backbone, ``hybrid`` (frozen sentence
vector + R-GCN, `plugins.models.hybrid`) or ``prompt-lm`` (UniCRS, `plugins.unicrs`).

The registered factory has one *union* signature, so the harness can check every parameter's name and type up
front and a run can store all of them with their defaults filled in. Building then passes each backbone only
what it takes: a filled-in default of the other backbone is dropped, and a value someone *set* for the other
backbone is refused by name.

Settings both backbones have (``kg_layers``, ``num_bases``, ``min_relation_edges``, ``max_context_entities``,
``text_encoder``) are one setting with the hybrid's default, passed to whichever backbone runs; on
``prompt-lm`` they override the UniCRS preset's value, and the record stores the value used.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

BACKBONES = ("hybrid", "prompt-lm")


def build_on_backbone(model: str, backbone: str, factories: dict[str, Callable[[], Any]],
                      signature: inspect.Signature, ctx: Any, params: dict[str, Any]) -> Any:
    """Build `model` on `backbone`; `factories` maps each backbone to a zero-argument import of its class (so
    the other backbone's modules are never imported) and `signature` is the union signature."""
    if backbone not in BACKBONES:
        raise ValueError(f"{model} backbone must be one of {BACKBONES}, got {backbone!r}")
    from plugins.models.backbones import backbone_params

    factory = factories[backbone]()
    accepted = list(inspect.signature(factory).parameters)[1:]
    return factory(ctx, **backbone_params(model, backbone, params, accepted, signature))


def union_signature(head: list[inspect.Parameter], hybrid: list[inspect.Parameter],
                    tail: list[inspect.Parameter]) -> inspect.Signature:
    """`head` (ctx, backbone), then every hybrid parameter, then every UniCRS setting the hybrid lacks (default
    None: the preset's value), all keyword-only, then `tail` (the parameter naming the UniCRS preset)."""
    from .presets import UNICRS_ONLY, signature as unicrs_signature

    seen = {p.name for p in head + hybrid + tail} | set(UNICRS_ONLY)
    prompt = [p for p in unicrs_signature([]).parameters.values() if p.name not in seen]
    keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in hybrid + prompt]
    return inspect.Signature(head + keyword + tail)
