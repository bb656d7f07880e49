"""The HTML report: `bench leaderboard --html DIR` writes the leaderboard as a self-contained static site with
a page per run group and figures for papers (docs/report.md). `write_site` is imported on first use, so that
the figure workers (`figure_worker`) import matplotlib and nothing of the leaderboard."""
from __future__ import annotations

from typing import Any

__all__ = ["write_site"]


def __getattr__(name: str) -> Any:
    if name == "write_site":
        from .site import write_site

        return write_site
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
