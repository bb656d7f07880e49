"""The `dcrs` factory: DCRS on the chosen backbone, ``hybrid`` (`plugins.dcrs.model`, the default) or
``prompt-lm`` (UniCRS, `plugins.dcrs.prompt_lm`); its signature accepts both backbones' parameters
(`plugins.models.backbones.backbone_params` drops or refuses the other backbone's)."""
from __future__ import annotations

import inspect
from typing import Any

from harness.api import RunContext

BACKBONES = ("hybrid", "prompt-lm")
PROMPT_LM_OWN = ("backbone_preset",)  # prompt-lm parameters besides UniCRS's settings


def build_dcrs(ctx: RunContext, backbone: str = "hybrid", **params: Any) -> Any:
    if backbone not in BACKBONES:
        raise ValueError(f"dcrs backbone must be one of {BACKBONES}, got {backbone!r}")
    from .model import DCRS

    if backbone == "hybrid":
        factory: Any = DCRS
        accepted = set(list(inspect.signature(DCRS).parameters)[1:])
    else:
        from plugins.unicrs.presets import SETTINGS

        from .prompt_lm import DCRSPromptLM

        factory = DCRSPromptLM
        shared = ("preset", "retriever", "retriever_params", "demonstrations")
        accepted = {*shared, *PROMPT_LM_OWN, *SETTINGS}
    from plugins.models.backbones import backbone_params

    return factory(ctx, **backbone_params("dcrs", backbone, params, accepted, build_dcrs.__signature__))


def _signature() -> inspect.Signature:
    """ctx, backbone, the hybrid DCRS's parameters, then the prompt-lm ones (UniCRS settings, default None)."""
    from plugins.unicrs.presets import UNICRS_ONLY, signature as unicrs_signature

    from .model import DCRS

    head = list(inspect.signature(build_dcrs).parameters.values())[:2]
    hybrid = list(inspect.signature(DCRS).parameters.values())[1:]
    seen = {p.name for p in head + hybrid} | set(UNICRS_ONLY)
    prompt = [p for p in unicrs_signature([]).parameters.values() if p.name not in seen]
    own = [inspect.Parameter("backbone_preset", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=str | None)]
    return inspect.Signature(head + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in hybrid + prompt + own])


build_dcrs.__signature__ = _signature()
