"""Errors meant for the user: the CLI prints them as one line (``bench: error: ...``) and exits 2."""
from __future__ import annotations


class RunError(RuntimeError):
    """A run that cannot start or finish (incompatible components, missing data, a failing stage)."""
