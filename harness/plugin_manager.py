"""Load plugins (built-in list, entry points, ``--plugin`` paths) and fill the registries.

Loading order, as in pytest: built-ins from `BUILTIN_PLUGINS`, then third-party entry points in the
``crs_bench`` group (skipped when ``CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD`` is set), then every
``--plugin`` module path or ``.py`` file, then the registration hooks (in that order, so a collision is
always blamed on the later plugin).

Isolation: a plugin is disabled by name (its plugin name or its distribution's) with
``--disable-plugin NAME`` / ``-p no:NAME`` or ``CRS_BENCH_DISABLE_PLUGINS=a,b``; a disabled plugin is not
imported. With ``tolerate=True`` an installed (entry-point) plugin that fails to import, to validate or to
register is skipped and reported in `Plugins.broken` instead of stopping the command; a plugin asked for
explicitly (``--plugin``, ``CRS_BENCH_PLUGINS``) always stops it. Every plugin's hook functions are checked
before registration: an unknown (misspelt) hook, a ``crs_bench_*`` function without ``@hookimpl`` and a
hook taking arguments its specification does not pass are one-line errors naming plugin and function.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Sequence

import pluggy

from . import ENTRY_POINT_GROUP, PROJECT_NAME, __version__
from .api import hookspecs
from .registry import Origin, Registries, RegistryError

DISABLE_AUTOLOAD_ENV = "CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD"
DISABLE_ENV = "CRS_BENCH_DISABLE_PLUGINS"  # plugin or distribution names, comma separated
PLUGINS_ENV = "CRS_BENCH_PLUGINS"  # extra --plugin values, comma separated
CORE_PLUGIN = "harness.stages"  # the built-in train and predict stages: never disabled

BUILTIN_PLUGINS: tuple[str, ...] = (
    CORE_PLUGIN,  # the built-in train and predict stages (trylast)
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
    "plugins.mscrs",
    "plugins.dcrs",
    "plugins.unicrs",
    "plugins.gcrs",
    "plugins.metrics.recall",
    "plugins.metrics.longtail",
    "plugins.metrics.conversation",
    "plugins.metrics.rec_in_response",
    "plugins.metrics.judge",
    "plugins.executors",
)
HOOK_NAMES: tuple[str, ...] = tuple(sorted(name for name, spec in vars(hookspecs).items()
                                           if name.startswith("crs_bench_") and callable(spec)))


class PluginError(RuntimeError):
    """A plugin failed to import or to register; the message names the plugin (and hook)."""


@dataclass(frozen=True)
class BrokenPlugin:
    """An installed plugin skipped because it failed to import, validate or register."""

    name: str
    origin: Origin | None
    problem: str  # one line, e.g. "failed to import: ModuleNotFoundError: No module named 'sklearn'"
    components: tuple[tuple[str, str], ...] = ()  # (kind, name) it had registered before failing

    def describe(self) -> str:
        return self.origin.label() if self.origin else f"plugin '{self.name}'"

    def message(self) -> str:
        return f"{self.describe()} {self.problem}"


@dataclass
class Plugins:
    """The loaded plugin manager, its filled registries and where every plugin came from."""

    manager: pluggy.PluginManager
    registries: Registries
    origins: dict[str, Origin] = field(default_factory=dict)
    broken: dict[str, BrokenPlugin] = field(default_factory=dict)
    disabled: list[str] = field(default_factory=list)  # names that were asked to be disabled and matched
    notices: list[str] = field(default_factory=list)  # one-line remarks (a --plugin already loaded, ...)
    modules: dict[str, Any] = field(default_factory=dict)  # plugin name -> module (or object)
    _fingerprints: dict[str, str | None] = field(default_factory=dict, repr=False)

    @property
    def hook(self):
        return self.manager.hook

    def warnings(self) -> list[str]:
        """One line per skipped plugin, for the CLI to print."""
        return [f"{broken.message()}; skipped (disable it with --disable-plugin {broken.name})"
                for broken in self.broken.values()]

    def fingerprint(self, name: str) -> str | None:
        """``sha256:<16 hex>`` of the plugin's code (`code_fingerprint`), computed once per plugin."""
        if name not in self._fingerprints:
            module, origin = self.modules.get(name), self.origins.get(name)
            self._fingerprints[name] = code_fingerprint(module, origin) if module is not None else None
        return self._fingerprints[name]

    def provenance(self) -> list[dict[str, Any]]:
        """The record's ``plugins``: every loaded plugin with its origin and code fingerprint."""
        return [{"name": name, **origin.as_dict(), "fingerprint": self.fingerprint(name)}
                for name, origin in sorted(self.origins.items())]

    def skipped(self) -> list[dict[str, Any]]:
        """The record's ``plugins_skipped``: broken and disabled plugins, so a run says what it ran without."""
        rows = [{"name": b.name, **(b.origin.as_dict() if b.origin else {}), "reason": b.problem}
                for b in self.broken.values()]
        return rows + [{"name": name, "reason": "disabled"} for name in self.disabled]

    def broken_source(self, kind: str, name: str) -> tuple[bool, str] | None:
        """Why component `name` of `kind` may be missing: (certain, text) when a broken plugin had registered
        it (certain) or a plugin that registered nothing was skipped or disabled (may), else None."""
        for broken in self.broken.values():
            if (kind, name) in broken.components:
                return True, f"it comes from {broken.describe()}, which was skipped: {broken.problem}"
        skipped = [broken for broken in self.broken.values() if not broken.components]
        if len(skipped) == 1:
            return False, f"it may come from {skipped[0].describe()}, which was skipped: {skipped[0].problem}"
        if skipped:
            return False, ("it may come from a skipped plugin (" + ", ".join(f"'{b.name}'" for b in skipped) +
                           "; see the warnings above)")
        if self.disabled:
            return False, "it may come from a disabled plugin (" + ", ".join(self.disabled) + ")"
        return None


def autoload_enabled() -> bool:
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() in ("", "0", "false", "no")


def disabled_from_env() -> list[str]:
    return [name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()]


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


class _Loader:
    """One `load_plugins` call: the manager, the origins, and what to do with a failing plugin."""

    def __init__(self, tolerate: bool, disable: Iterable[str]):
        self.manager = pluggy.PluginManager(PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        self.tolerate = tolerate
        self.origins: dict[str, Origin] = {}
        self.modules: dict[str, Any] = {}
        self.explicit: set[str] = set()
        self.broken: dict[str, BrokenPlugin] = {}
        self.notices: list[str] = []
        self.disable = {name.strip() for name in disable if name.strip()}
        self.disable_normalised = {_normalise(name) for name in self.disable}
        self.disabled_hits: set[str] = set()
        if CORE_PLUGIN in self.disable:
            raise PluginError(f"plugin '{CORE_PLUGIN}' holds the built-in train and predict stages and cannot be "
                              "disabled")

    def is_disabled(self, *names: str | None) -> bool:
        for name in names:
            if name and (name in self.disable or _normalise(name) in self.disable_normalised):
                self.disabled_hits.add(name)
                return True
        return False

    def fail(self, name: str, origin: Origin | None, problem: str, explicit: bool) -> None:
        """A plugin that cannot be used: an error, or (tolerated, installed plugins) a skip on record."""
        broken = BrokenPlugin(name, origin, problem)
        if explicit or not self.tolerate:
            raise PluginError(broken.message())
        self.broken[name] = broken

    def register(self, module: Any, name: str, origin: Origin, explicit: bool) -> None:
        manager = self.manager
        if manager.is_registered(module):
            already = manager.get_name(module)
            self.notices.append(f"plugin '{name}' ({origin.describe()}) is already loaded as "
                                f"{self.origins[already].describe()}; not loaded twice")
            return
        if manager.has_plugin(name):
            self.fail(name, origin, f"cannot be loaded: the plugin name is already taken by "
                                    f"{self.origins[name].describe()}", explicit)
            return
        problem = hook_problem(module, manager)
        if problem:
            self.fail(name, origin, f"is invalid: {problem}", explicit)
            return
        try:
            manager.register(module, name=name)
        except (pluggy.PluginValidationError, ValueError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            self.fail(name, origin, f"is invalid: {first}", explicit)
            return
        self.origins[name] = origin
        self.modules[name] = module
        if explicit:
            self.explicit.add(name)


def load_plugins(extra: Sequence[str] = (), autoload: bool | None = None, *, disable: Sequence[str] = (),
                 tolerate: bool = False) -> Plugins:
    """Build a plugin manager with every plugin loaded and every registry filled.

    `disable` adds to ``CRS_BENCH_DISABLE_PLUGINS``; `tolerate` skips broken installed plugins (see the
    module docstring) instead of raising `PluginError`."""
    loader = _Loader(tolerate, [*disabled_from_env(), *disable])

    for module_name in BUILTIN_PLUGINS:
        if loader.is_disabled(module_name):
            continue
        loader.register(importlib.import_module(module_name), module_name,
                        Origin(module_name, "builtin", "crs-bench", __version__), explicit=False)

    if autoload if autoload is not None else autoload_enabled():
        for entry_point in _unique(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)):
            dist = entry_point.dist
            origin = Origin(entry_point.name, "entrypoint", dist.name if dist else None, dist.version if dist else None)
            if loader.is_disabled(entry_point.name, dist.name if dist else None):
                continue
            try:
                module = entry_point.load()
            except Exception as error:  # noqa: BLE001 - any import failure is reported with its origin
                loader.fail(entry_point.name, origin, f"failed to import: {_one_line(error)}", explicit=False)
                continue
            loader.register(module, entry_point.name, origin, explicit=False)

    env_extra = [p for p in os.environ.get(PLUGINS_ENV, "").split(",") if p.strip()]
    for spec in [*env_extra, *extra]:
        spec = spec.strip()
        if loader.is_disabled(spec):
            continue
        module, origin = _import_plugin_spec(spec)
        loader.register(module, origin.plugin, origin, explicit=True)

    manager = loader.manager
    try:
        manager.check_pending()  # `hook_problem` found these already; this is pluggy's own safety net
    except pluggy.PluginValidationError as error:
        name = manager.get_name(error.plugin) or "?"
        origin = loader.origins.get(name)
        raise PluginError(f"plugin '{name}' ({origin.describe() if origin else 'unknown'}) is invalid: "
                          f"{str(error).splitlines()[0]}") from None
    registries = Registries()
    _run_registration(loader, registries)
    unmatched = sorted(loader.disable - loader.disabled_hits)
    notices = list(loader.notices)
    if unmatched:
        notices.append("no plugin named " + ", ".join(f"'{name}'" for name in unmatched) + " to disable")
    return Plugins(manager, registries, dict(loader.origins), dict(loader.broken), sorted(loader.disabled_hits),
                   notices, dict(loader.modules))


def _unique(entry_points: Iterable[Any]) -> list[Any]:
    """One entry point per (distribution, name): a distribution found twice on sys.path loads once."""
    seen, result = set(), []
    for entry_point in entry_points:
        dist = entry_point.dist
        key = (_normalise(dist.name) if dist else None, entry_point.name)
        if key not in seen:
            seen.add(key)
            result.append(entry_point)
    return result


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _suggest_hook(name: str) -> str:
    close = difflib.get_close_matches(name, HOOK_NAMES, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else "crs-bench has no such hook (see docs/plugins.md)"


def hook_problem(plugin: Any, manager: pluggy.PluginManager) -> str | None:
    """One line describing the first mistake in a plugin's hook functions, or None.

    * a function marked ``@hookimpl`` whose name is no hook (a misspelling): names it and the closest hook;
    * a ``crs_bench_*`` function without ``@hookimpl``, which pluggy would silently ignore;
    * a hook asking for an argument its specification does not pass."""
    for attribute in sorted(dir(plugin)):
        if not attribute.startswith("crs_bench_"):
            continue
        try:
            function = getattr(plugin, attribute)
        except Exception:  # noqa: BLE001 - a property that raises is no hook
            continue
        if not callable(function) or inspect.isclass(function) or hasattr(function, f"{PROJECT_NAME}_spec"):
            continue  # a class, or a hook specification imported from harness.api.hookspecs
        options = manager.parse_hookimpl_opts(plugin, attribute)
        if options is None:
            if attribute in HOOK_NAMES:
                return (f"function '{attribute}' is not marked @hookimpl and would be ignored: decorate it with "
                        f"@hookimpl (from harness.api import hookimpl)")
            return (f"function '{attribute}' is not marked @hookimpl and names no hook: {_suggest_hook(attribute)}")
        hook_name = options.get("specname") or attribute
        if hook_name not in HOOK_NAMES:
            if options.get("optionalhook"):
                continue
            named = f"hook function '{attribute}'" + (f" (specname '{hook_name}')" if hook_name != attribute else "")
            return f"{named} names no crs-bench hook: {_suggest_hook(hook_name)}"
        spec_args = list(inspect.signature(getattr(hookspecs, hook_name)).parameters)
        unknown = [arg for arg in _required_arguments(function) if arg not in spec_args]
        if unknown:
            return (f"hook '{attribute}' takes argument(s) {', '.join(repr(a) for a in unknown)}, which the hook "
                    f"does not pass (it passes: {', '.join(spec_args)})")
    return None


def _required_arguments(function: Any) -> list[str]:
    """The arguments a hook implementation needs (those without a default), as pluggy passes them."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in parameters if p.default is inspect.Parameter.empty and p.name not in ("self", "cls")
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


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
            raise PluginError(f"plugin file '{spec}' failed to import: {_one_line(error)}") from error
        return module, Origin(str(path), "path", None, f"sha256:{digest}")
    try:
        module = importlib.import_module(spec)
    except Exception as error:  # noqa: BLE001
        raise PluginError(f"plugin module '{spec}' failed to import: {_one_line(error)}") from error
    return module, Origin(spec, "path", None, None)


def _run_registration(loader: _Loader, registries: Registries) -> None:
    """Call every plugin's registration hooks one by one, in loading order, so that components know their
    origin and a name collision is always reported against the plugin loaded later."""
    manager, order = loader.manager, {name: position for position, name in enumerate(loader.origins)}
    for kind, hook_name in hookspecs.REGISTRATION_HOOKS.items():
        registry = registries.of(kind)
        impls = sorted(getattr(manager.hook, hook_name).get_hookimpls(), key=lambda i: order.get(i.plugin_name, 0))
        for impl in impls:
            name = impl.plugin_name
            registry._current_origin = loader.origins.get(name, Origin(name, "unknown"))
            try:
                impl.function(registry=registry)
            except RegistryError as error:
                problem = f"was refused in {hook_name}: {error}"
            except Exception as error:  # noqa: BLE001 - a plugin's bug must name the plugin
                problem = f"raised in {hook_name}: {_one_line(error)}"
            else:
                continue
            finally:
                registry._current_origin = None
            if name in loader.explicit or not loader.tolerate or name == CORE_PLUGIN:
                raise PluginError(f"plugin '{name}' {problem}") from None
            removed = tuple((k, component) for k in registries.kinds() for component in registries.of(k).remove_from(name))
            manager.unregister(name=name)
            loader.broken[name] = BrokenPlugin(name, loader.origins.pop(name, None), problem, removed)
            loader.modules.pop(name, None)


# --- code fingerprints ------------------------------------------------------------------------------

_SKIPPED_SUFFIXES = (".pyc", ".pyo")
_METADATA_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def code_fingerprint(module: Any, origin: Origin | None) -> str | None:
    """``sha256:<16 hex>`` over the plugin's code files (relative name and bytes of each, sorted).

    An installed distribution: every file it installed (its ``RECORD``), metadata included, compiled
    files and install-time bookkeeping left out; an editable install or an unpackaged plugin: the module's
    file, or every ``.py`` file of its package. None when no file can be read."""
    files = _distribution_files(origin) if origin is not None and origin.source == "entrypoint" else []
    if not any(name.endswith(".py") for name, _ in files):
        files = _module_files(module)
    if not files:
        return None
    digest = hashlib.sha256()
    for name, path in sorted(files):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return f"sha256:{digest.hexdigest()[:16]}"


def _distribution_files(origin: Origin) -> list[tuple[str, Path]]:
    if not origin.distribution:
        return []
    try:
        dist = importlib.metadata.distribution(origin.distribution)
    except importlib.metadata.PackageNotFoundError:
        return []
    result = []
    for file in dist.files or []:
        parts = file.parts
        if file.name.endswith(_SKIPPED_SUFFIXES) or "__pycache__" in parts or file.name.endswith(".pth"):
            continue
        if any(part.endswith(".dist-info") for part in parts) and file.name in _METADATA_FILES:
            continue
        path = Path(file.locate())
        if path.is_file():
            result.append((file.as_posix(), path))
    return result


def _module_files(module: Any) -> list[tuple[str, Path]]:
    module_object = module if isinstance(module, ModuleType) else sys.modules.get(type(module).__module__)
    if module_object is None:
        return []
    paths = list(getattr(module_object, "__path__", []) or [])
    if paths:
        result = []
        for root in map(Path, paths):
            for path in sorted(root.rglob("*.py")):
                if "__pycache__" not in path.parts:
                    result.append(((Path(root.name) / path.relative_to(root)).as_posix(), path))
        return result
    file = getattr(module_object, "__file__", None)
    return [(Path(file).name, Path(file))] if file and Path(file).is_file() else []
