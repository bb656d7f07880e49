"""Transitional alias of `harness.api` (removed once every plugin imports harness.api)."""
from .api import RunContext  # noqa: F401
