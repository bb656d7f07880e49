"""Factory signatures of components that extend another's keyword parameters (`**base`)."""
from __future__ import annotations

import inspect
from typing import Any, Callable


def extended(own: Callable[..., Any], base: Callable[..., Any]) -> inspect.Signature:
    """ctx + `own`'s parameters (without its ``**kwargs``) + `base`'s after ``self, ctx``: what the harness
    checks ``params`` names and types against."""
    head = [p for p in list(inspect.signature(own).parameters.values())[1:] if p.kind != p.VAR_KEYWORD]
    tail = list(inspect.signature(base).parameters.values())[2:]
    return inspect.Signature(head + tail)
