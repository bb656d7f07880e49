"""How a metric family declares itself at registration (`registry.add(..., spec=MetricSpec(...))`).

The core knows no metric by name: the leaderboard's columns, their direction (higher or lower is
better), which columns get significance marks, and which parameters a family accepts all come from
these declarations. Keys are `fnmatch` patterns (``"recall@*"``) because families produce a key per
cut-off they are configured with.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Mapping

HIGHER, LOWER, COUNT, INFO = "higher", "lower", "count", "info"
DIRECTIONS = (HIGHER, LOWER, COUNT, INFO)  # count: a sample count; info: a descriptive string (a signature)
TASKS = ("rec", "conv")
CONV_SETTING = "all"  # the conversation task scores every test response of the recommender


@dataclass(frozen=True)
class MetricParam:
    """One parameter of a metric family, set in a config's ``metric_params`` mapping."""

    type: type
    default: Any
    help: str = ""

    def coerce(self, name: str, value: Any) -> Any:
        """The value as this parameter's type; a ValueError names the parameter otherwise."""
        if self.type is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, self.type) and not (self.type is int and isinstance(value, bool)):
            return value
        raise ValueError(f"metric parameter '{name}' expects {self.type.__name__}, got {value!r}")


@dataclass(frozen=True)
class MetricSpec:
    """What a metric family produces and accepts.

    * ``task``: ``"rec"`` (computed from ranked lists) or ``"conv"`` (from generated responses);
    * ``keys``: key pattern -> ``"higher"``, ``"lower"`` (better), ``"count"`` (a sample count, not a score)
      or ``"info"`` (a descriptive string such as a signature, never a column);
    * ``columns``: the keys the leaderboard shows by default, in order;
    * ``significance``: key patterns whose per-sample values the stored outputs determine, so the
      leaderboard can mark rows a paired bootstrap cannot tell from the best;
    * ``params``: name -> `MetricParam`; a config naming any other parameter is an error;
    * ``primary``: the key leaderboard rows are sorted by (best first), when the table has it;
    * ``default``: whether a config without a ``metrics:`` list runs the family. False for families that
      are costly or call a paid service (an LLM judge): they run only when a config names them, in
      ``metrics:`` or ``extra_metrics:``.
    """

    task: str
    keys: Mapping[str, str]
    columns: tuple[str, ...] = ()
    significance: tuple[str, ...] = ()
    params: Mapping[str, MetricParam] = field(default_factory=dict)
    primary: str | None = None
    default: bool = True

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"MetricSpec.task must be one of {TASKS}, got {self.task!r}")
        bad = {pattern: d for pattern, d in self.keys.items() if d not in DIRECTIONS}
        if bad:
            raise ValueError(f"MetricSpec.keys: directions must be one of {DIRECTIONS}, got {bad}")
        if not self.keys:
            raise ValueError("MetricSpec.keys must declare at least one key pattern")
        for column in (*self.columns, *self.significance, *([self.primary] if self.primary else [])):
            if self.direction(column) is None and not any(fnmatch.fnmatchcase(p, column) for p in self.keys):
                raise ValueError(f"MetricSpec: column {column!r} matches no declared key pattern")

    def direction(self, key: str) -> str | None:
        """The declared direction of `key`, or None when this family does not produce it."""
        for pattern, direction in self.keys.items():
            if fnmatch.fnmatchcase(key, pattern):
                return direction
        return None

    def produces(self, key: str) -> bool:
        return self.direction(key) is not None

    def tested(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.significance)

    def resolve_params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """This family's effective parameters: declared defaults overridden by `values` (its own keys only)."""
        return {name: param.coerce(name, values[name]) if name in values else param.default
                for name, param in self.params.items()}


def patterns_overlap(a: str, b: str) -> bool:
    """Whether two key patterns can name the same key (exact, or one matches the other)."""
    return a == b or fnmatch.fnmatchcase(a, b) or fnmatch.fnmatchcase(b, a)
