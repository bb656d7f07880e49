"""The `dcrs` factory: DCRS on the chosen backbone, ``hybrid`` (`plugins.dcrs.model`, the default) or
``prompt-lm`` (UniCRS, `plugins.dcrs.prompt_lm`), through the backbone switch (`plugins.unicrs.switch`): one
union signature over both backbones' parameters, each backbone built with its own."""
from __future__ import annotations

import inspect
from typing import Any

from harness.api import RunContext


def _hybrid() -> type:
    from .model import DCRS

    return DCRS


def _prompt_lm() -> type:
    from .prompt_lm import DCRSPromptLM

    return DCRSPromptLM


def build_dcrs(ctx: RunContext, backbone: str = "hybrid", **params: Any) -> Any:
    from plugins.unicrs.switch import build_on_backbone

    return build_on_backbone("dcrs", backbone, {"hybrid": _hybrid, "prompt-lm": _prompt_lm},
                             build_dcrs.__signature__, ctx, params)


def _signature() -> inspect.Signature:
    """ctx, backbone, the hybrid DCRS's parameters, the UniCRS settings (default None), then
    `backbone_preset` (the UniCRS preset of the prompt-lm backbone)."""
    from plugins.unicrs.switch import union_signature

    return union_signature(list(inspect.signature(build_dcrs).parameters.values())[:2],
                           list(inspect.signature(_hybrid()).parameters.values())[1:],
                           [inspect.Parameter("backbone_preset", inspect.Parameter.KEYWORD_ONLY, default=None,
                                              annotation=str | None)])


build_dcrs.__signature__ = _signature()
