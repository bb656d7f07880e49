"""Choosing a system's backbone: systems built on `hybrid` or `prompt-lm` (UniCRS) take both backbones'
parameters in one factory signature, so the harness checks names and types up front."""
from __future__ import annotations

import inspect
import json
from typing import Any, Iterable


def backbone_params(system: str, backbone: str, params: dict[str, Any], accepted: Iterable[str],
                    signature: inspect.Signature) -> dict[str, Any]:
    """The `params` the chosen backbone takes. A run stores every parameter of the union `signature` at its
    default, so the other backbone's defaults are dropped; only a value someone set for the other backbone
    is refused, by name."""
    accepted = set(accepted)
    defaults = {p.name: p.default for p in signature.parameters.values() if p.default is not p.empty}
    wrong = sorted(name for name in set(params) - accepted
                   if name not in defaults or json.dumps(params[name]) != json.dumps(defaults[name], default=str))
    if wrong:
        raise TypeError(f"{system} backbone '{backbone}' has no parameter '{wrong[0]}'")
    return {name: value for name, value in params.items() if name in accepted}
