"""Load plugins (built-in list, entry points, ``--plugin`` paths) and fill the registries.

Loading order, as in pytest: built-ins from `BUILTIN_PLUGINS`, then third-party entry points in the
``crs_bench`` group (skipped when ``CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD`` is set), then every
``--plugin`` module path or ``.py`` file, then the registration hooks.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Sequence

import pluggy

from . import ENTRY_POINT_GROUP, PROJECT_NAME, __version__
from .api import hookspecs
from .registry import Origin, Registries, RegistryError

DISABLE_AUTOLOAD_ENV = "CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD"
PLUGINS_ENV = "CRS_BENCH_PLUGINS"  # extra --plugin values, comma separated

BUILTIN_PLUGINS: tuple[str, ...] = (
    "harness.stages",  # the built-in train and predict stages (trylast)
    "plugins.synthetic",
    "plugins.datasets.inspired",
    "plugins.datasets.redial",
    "plugins.baselines",
    "plugins.models",
    "plugins.losses.ce",
    "plugins.losses.focal",
    "plugins.losses.prior",
    "plugins.losses.margin",
    "plugins.losses.alpa",
    "plugins.losses.csl",
    "plugins.losses.dr_loss",
    "plugins.losses.ahl",
    "plugins.augmenters",
    "plugins.llm",
    "plugins.retrievers",
    "plugins.generators",
    "plugins.lumicrs",
    "plugins.metrics.recall",
    "plugins.metrics.longtail",
    "plugins.metrics.conversation",
)


class PluginError(RuntimeError):
    """A plugin failed to import or to register; the message names the plugin (and hook)."""


@dataclass
class Plugins:
    """The loaded plugin manager, its filled registries and where every plugin came from."""

    manager: pluggy.PluginManager
    registries: Registries
    origins: dict[str, Origin] = field(default_factory=dict)

    @property
    def hook(self):
        return self.manager.hook


def autoload_enabled() -> bool:
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() in ("", "0", "false", "no")


def load_plugins(extra: Sequence[str] = (), autoload: bool | None = None) -> Plugins:
    """Build a plugin manager with every plugin loaded and every registry filled."""
    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    origins: dict[str, Origin] = {}

    def register(module: object, name: str, origin: Origin) -> None:
        if manager.has_plugin(name):
            raise PluginError(f"plugin name '{name}' from {origin.describe()} is already taken by "
                              f"{origins[name].describe()}")
        try:
            manager.register(module, name=name)
        except pluggy.PluginValidationError as error:
            raise PluginError(f"plugin '{name}' ({origin.describe()}) is invalid: {error}") from None
        origins[name] = origin

    for module_name in BUILTIN_PLUGINS:
        register(importlib.import_module(module_name), module_name,
                 Origin(module_name, "builtin", "crs-bench", __version__))

    if autoload if autoload is not None else autoload_enabled():
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = entry_point.dist
            origin = Origin(entry_point.name, "entrypoint", dist.name if dist else None, dist.version if dist else None)
            try:
                module = entry_point.load()
            except Exception as error:  # noqa: BLE001 - any import failure is reported with its origin
                raise PluginError(f"plugin '{entry_point.name}' ({origin.describe()}) failed to import: "
                                  f"{type(error).__name__}: {error}") from error
            register(module, entry_point.name, origin)

    env_extra = [p for p in os.environ.get(PLUGINS_ENV, "").split(",") if p.strip()]
    for spec in [*env_extra, *extra]:
        module, origin = _import_plugin_spec(spec.strip())
        register(module, origin.plugin, origin)

    try:
        manager.check_pending()  # a misspelt hook name is an error, not a silently ignored function
    except pluggy.PluginValidationError as error:
        name = manager.get_name(error.plugin) or "?"
        origin = origins.get(name)
        raise PluginError(f"plugin '{name}' ({origin.describe() if origin else 'unknown'}) is invalid: "
                          f"{error}") from None
    registries = Registries()
    _run_registration(manager, registries, origins)
    return Plugins(manager, registries, origins)


def _import_plugin_spec(spec: str) -> tuple[ModuleType, Origin]:
    """Import ``--plugin`` values: a dotted module path or a path to a ``.py`` file."""
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise PluginError(f"plugin file '{spec}' does not exist")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        module_name = f"crs_bench_path_plugin_{path.stem}_{digest}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        assert module_spec and module_spec.loader
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as error:  # noqa: BLE001
            sys.modules.pop(module_name, None)
            raise PluginError(f"plugin file '{spec}' failed to import: {type(error).__name__}: {error}") from error
        return module, Origin(str(path), "path", None, f"sha256:{digest}")
    try:
        module = importlib.import_module(spec)
    except Exception as error:  # noqa: BLE001
        raise PluginError(f"plugin module '{spec}' failed to import: {type(error).__name__}: {error}") from error
    return module, Origin(spec, "path", None, None)


def _run_registration(manager: pluggy.PluginManager, registries: Registries, origins: dict[str, Origin]) -> None:
    """Call every plugin's registration hooks one by one so that components know their origin."""
    for kind, hook_name in hookspecs.REGISTRATION_HOOKS.items():
        registry = registries.of(kind)
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            registry._current_origin = origins.get(impl.plugin_name, Origin(impl.plugin_name, "unknown"))
            try:
                impl.function(registry=registry)
            except RegistryError as error:
                raise PluginError(f"plugin '{impl.plugin_name}' in {hook_name}: {error}") from None
            except Exception as error:  # noqa: BLE001 - a plugin's bug must name the plugin
                raise PluginError(f"plugin '{impl.plugin_name}' raised in {hook_name}: "
                                  f"{type(error).__name__}: {error}") from error
            finally:
                registry._current_origin = None
