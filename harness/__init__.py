"""crs-bench core: hook specifications, plugin manager, config, runner, results and leaderboard.

Importing this package stays cheap (no torch, transformers or torch-geometric) so that
`bench --help` and `bench plugins` start fast; heavy libraries are imported inside factories.
"""
from __future__ import annotations

import pluggy

__version__ = "0.1.0"
PROJECT_NAME = "crs_bench"
ENTRY_POINT_GROUP = "crs_bench"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marker for plugin hook implementations: ``@hookimpl def crs_bench_register_models(registry): ...``."""

__all__ = ["__version__", "hookimpl", "PROJECT_NAME", "ENTRY_POINT_GROUP"]
