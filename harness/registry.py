"""Typed registries that plugins fill during the registration hooks.

Each entry carries its origin (plugin name, distribution, version) so that collisions can name both
sides and every result record can say which code produced each component.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .api.kinds import REGISTRY_NAMES, kind_of
from .api.metrics import MetricSpec, patterns_overlap

KINDS = REGISTRY_NAMES  # defined once, in harness.api.kinds


class RegistryError(LookupError):
    """Unknown name or name collision; the message is one line meant for the user."""


@dataclass(frozen=True)
class Origin:
    """Where a component comes from: the plugin object's name and, if packaged, its distribution."""

    plugin: str
    source: str  # "builtin", "entrypoint" or "path"
    distribution: str | None = None
    version: str | None = None

    def describe(self) -> str:
        dist = f" ({self.distribution} {self.version})" if self.distribution else ""
        return f"{self.source}:{self.plugin}{dist}"

    def label(self) -> str:
        """How error lines name the plugin itself: ``plugin 'x' (entry point of dist 1.0)``."""
        how = {"builtin": "built-in", "entrypoint": "entry point", "path": "--plugin"}.get(self.source, self.source)
        dist = f" of {self.distribution} {self.version}" if self.distribution and self.source != "builtin" else ""
        return f"plugin '{self.plugin}' ({how}{dist})"

    def as_dict(self) -> dict[str, Any]:
        return {"plugin": self.plugin, "source": self.source, "distribution": self.distribution, "version": self.version}


@dataclass(frozen=True)
class Component:
    """One registered component.

    `factory(ctx, **params)` (models, losses, augmenters, retrievers, generators), `factory(**params)` (metrics),
    `factory(data_dir, **params)` (datasets) or `factory(cache_dir=..., **params)` (LLM backends) builds
    the object. The factory may be given as a
    ``"package.module:attribute"`` string, imported only when the component is built, so that a module
    full of torch code can be registered without importing torch (``bench plugins`` stays fast). `requires` declares what
    the harness must provide or check, e.g. ``{"item_counts"}`` for a loss or ``{"cosine_head"}``.
    `provides` declares capabilities of models (e.g. ``{"cosine_head"}``).
    """

    kind: str
    name: str
    factory: Callable[..., Any] | str
    description: str
    requires: frozenset[str] = frozenset()
    provides: frozenset[str] = frozenset()
    version: str = "1"
    origin: Origin | None = None
    spec: MetricSpec | None = None  # metric families only: what they produce and accept
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def singular(self) -> str:
        return kind_of(self.kind).singular

    def describe(self) -> str:
        """How messages name it: ``model 'kbrd' (builtin:plugins.models)``."""
        return f"{self.singular} '{self.name}' ({self.origin.describe() if self.origin else 'unknown origin'})"

    def resolve(self) -> Callable[..., Any]:
        """The factory callable, importing it first when it was registered lazily."""
        if callable(self.factory):
            return self.factory
        module_name, _, attribute = self.factory.partition(":")
        import importlib

        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            origin = self.origin.describe() if self.origin else "unknown origin"
            raise RegistryError(f"{self.singular} '{self.name}' ({origin}): cannot import factory "
                                f"'{self.factory}': {error}") from error

    def build(self, *args: Any, **params: Any) -> Any:
        return self.resolve()(*args, **params)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "description": self.description,
            "requires": sorted(self.requires),
            "provides": sorted(self.provides),
            "version": self.version,
            "origin": self.origin.as_dict() if self.origin else None,
            **({"task": self.spec.task, "params": {k: p.default for k, p in self.spec.params.items()}}
               if self.spec else {}),
        }


class Registry:
    """Components of one kind, keyed by name. Plugins call `add`; the harness calls `get`."""

    def __init__(self, kind: str):
        self.singular = kind_of(kind).singular
        self.kind = kind
        self._entries: dict[str, Component] = {}
        self._current_origin: Origin | None = None

    def add(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        description: str,
        *,
        requires: set[str] | frozenset[str] | tuple[str, ...] = (),
        provides: set[str] | frozenset[str] | tuple[str, ...] = (),
        version: str = "1",
        spec: MetricSpec | None = None,
        **extra: Any,
    ) -> Component:
        """Register `name`; a second registration of the same name is an error naming both origins.

        Metric families must pass ``spec=MetricSpec(...)``; no other kind takes one."""
        if not name or name != name.strip():
            raise RegistryError(f"{self.singular} name {name!r} is empty or padded")
        if not description:
            raise RegistryError(f"{self.singular} '{name}' needs a one-line description")
        if self.kind == "metrics" and not isinstance(spec, MetricSpec):
            raise RegistryError(f"metric '{name}' needs spec=MetricSpec(task=..., keys=...) at registration")
        if self.kind != "metrics" and spec is not None:
            raise RegistryError(f"{self.singular} '{name}': only metric families take a spec")
        component = Component(
            kind=self.kind,
            name=name,
            factory=factory,
            description=description.strip().splitlines()[0],
            requires=frozenset(requires),
            provides=frozenset(provides),
            version=str(version),
            origin=self._current_origin,
            spec=spec,
            extra=dict(extra),
        )
        if name in self._entries:
            first = self._entries[name].origin
            raise RegistryError(
                f"{self.singular} '{name}' is registered twice: by "
                f"{first.describe() if first else 'unknown'} and by "
                f"{component.origin.describe() if component.origin else 'unknown'}"
            )
        if spec is not None:
            self._check_metric_overlap(component)
        self._entries[name] = component
        return component

    def _check_metric_overlap(self, new: Component) -> None:
        """Two families producing the same key (or taking the same parameter) is an error naming both."""
        assert new.spec is not None
        for other in self._entries.values():
            assert other.spec is not None
            if other.spec.task != new.spec.task:
                continue
            shared = [(a, b) for a in new.spec.keys for b in other.spec.keys if patterns_overlap(a, b)]
            if shared:
                raise RegistryError(f"metric families '{other.name}' ({other.origin.describe() if other.origin else '?'}) "
                                    f"and '{new.name}' ({new.origin.describe() if new.origin else '?'}) both "
                                    f"produce key '{shared[0][0]}'")
            params = sorted(set(new.spec.params) & set(other.spec.params))
            if params:
                raise RegistryError(f"metric families '{other.name}' and '{new.name}' both declare the parameter "
                                    f"'{params[0]}' (metric parameters share one namespace, metric_params)")

    def get(self, name: str) -> Component:
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        singular = self.singular
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        if close:
            hint = "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
        else:
            hint = "registered: " + ", ".join(sorted(self._entries)) if self._entries else "none registered"
        return f"unknown {singular} '{name}': {hint}"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Component]:
        return iter(sorted(self._entries.values(), key=lambda c: c.name))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def remove_from(self, plugin: str) -> list[str]:
        """Drop every component `plugin` registered (a plugin skipped as broken); their names."""
        names = [name for name, c in self._entries.items() if c.origin is not None and c.origin.plugin == plugin]
        for name in names:
            del self._entries[name]
        return names

    def in_order(self) -> list[Component]:
        """Components in registration order (built-in plugins first, in `BUILTIN_PLUGINS` order)."""
        return list(self._entries.values())


class Registries:
    """All component registries of one plugin manager: ``registries.models``, ``registries.of("models")``."""

    def __init__(self) -> None:
        self._registries = {kind: Registry(kind) for kind in KINDS}

    def __getattr__(self, kind: str) -> Registry:
        registries = self.__dict__.get("_registries", {})
        if kind in registries:
            return registries[kind]
        raise AttributeError(f"no registry {kind!r}; known: {', '.join(KINDS)}")

    def of(self, kind: str) -> Registry:
        if kind not in self._registries:
            raise ValueError(f"unknown registry kind {kind!r}")
        return self._registries[kind]

    def kinds(self) -> tuple[str, ...]:
        return tuple(self._registries)

    def all(self) -> Iterator[Component]:
        for kind in KINDS:
            yield from self.of(kind)
