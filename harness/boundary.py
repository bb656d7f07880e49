"""The one error boundary around plugin code at run time.

Whatever a component (model, loss, augmenter, metric family, generator, dataset loader) or a hook
implementation raises while a run executes becomes a `PluginFailure`: one line naming the component, the
plugin and distribution it comes from, the stage (``build``, ``augment``, ``train step``, ``epoch hook``,
``validate``, ``predict``, ``metric compute``, ``conversation``, ``record hook``, ...) and the exception.
The original exception is its ``__cause__``; ``bench --traceback`` prints the whole trace.

When several components take part in a stage (the model and the loss in a training step) the culprit is
the innermost traceback frame that belongs to one of them (by code object, then by module); the stage's
first component otherwise. ``resumable`` tells the runner whether the run's checkpoint is worth keeping:
failures of code that shapes the weights (build, train step, validation) are not, failures of observers
and of the test-time stages are.
"""
from __future__ import annotations

import contextlib
import inspect
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from .errors import RunError

STAGES = ("build", "augment", "train step", "epoch hook", "validate", "predict", "metric compute", "conversation",
          "record hook", "lifecycle hook", "stage")


class PluginFailure(RunError):
    """Plugin code failed during a run; ``str()`` is the one line the CLI prints."""

    def __init__(self, what: str, stage: str, problem: str, *, resumable: bool = False,
                 error: BaseException | None = None):
        self.what, self.stage, self.problem, self.resumable, self.error = what, stage, problem, resumable, error
        self.outcome = ""  # what the runner did with the run directory, appended by `execute`
        super().__init__(self._text())

    def _text(self) -> str:
        return f"{self.what} failed in {self.stage}: {self.problem}" + (f"; {self.outcome}" if self.outcome else "")

    def __str__(self) -> str:
        return self._text()


def one_line(error: BaseException) -> str:
    """``Type: first line of the message``."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0].strip()}" if lines else type(error).__name__


# Exceptions that are already one line for the user, or not failures of plugin code: never re-wrapped.
def _passthrough() -> tuple[type[BaseException], ...]:
    from .api.conformance import ConformanceError
    from .config import ConfigError
    from .data import DataError
    from .registry import RegistryError
    from .requirements import RequirementError

    return (RunError, ConfigError, ConformanceError, DataError, RegistryError, RequirementError)


_GENERIC_PACKAGES = frozenset({"builtins", "torch", "numpy", "functools", "typing", "abc", "collections", "harness",
                               "pluggy", "contextlib"})


def _is_generic(module: str | None) -> bool:
    """Library and harness code: never the culprit itself."""
    return not module or module.split(".")[0] in _GENERIC_PACKAGES


@dataclass
class Suspect:
    """A component (or a hook's plugin) that may have raised: how messages name it, and its code."""

    what: str
    codes: set[Any] = field(default_factory=set)
    modules: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, component: Any, *objects: Any) -> "Suspect":
        """From a registry `Component` and the objects built from it (their classes' methods, modules)."""
        suspect = cls(component.describe())
        factory = component.factory
        if isinstance(factory, str):
            suspect.modules.add(factory.partition(":")[0])
        else:
            objects = (factory, *objects)
        for obj in objects:
            suspect.add(obj)
        return suspect

    def add(self, obj: Any) -> None:
        if obj is None:
            return
        targets = [obj] if inspect.isfunction(obj) or inspect.ismethod(obj) else []
        klass = obj if inspect.isclass(obj) else type(obj)
        for base in getattr(klass, "__mro__", ()):
            if _is_generic(base.__module__):
                continue
            self.modules.add(base.__module__)
            targets += [member for member in vars(base).values() if inspect.isfunction(member)]
        for target in targets:
            function = getattr(target, "__func__", target)
            code = getattr(function, "__code__", None)
            if code is not None:
                self.codes.add(code)
            module = getattr(function, "__module__", None)
            if not _is_generic(module):
                self.modules.add(module)


def _frames(error: BaseException) -> list[Any]:
    """The traceback's frames, innermost first."""
    frames = []
    traceback = error.__traceback__
    while traceback is not None:
        frames.append(traceback.tb_frame)
        traceback = traceback.tb_next
    return frames[::-1]


def culprit(error: BaseException, suspects: Sequence[Suspect]) -> Suspect:
    """The suspect whose code is innermost in the traceback; when none of them appears (an error raised by
    torch on their behalf, e.g. in ``backward()``), all of them, named together."""
    frames = _frames(error)
    for frame in frames:
        for suspect in suspects:
            if frame.f_code in suspect.codes:
                return suspect
    for frame in frames:
        module = frame.f_globals.get("__name__")
        for suspect in suspects:
            if module in suspect.modules:
                return suspect
    packages = [(suspect, {m.rpartition(".")[0] for m in suspect.modules if "." in m}) for suspect in suspects]
    for frame in frames:
        module = frame.f_globals.get("__name__") or ""
        for suspect, roots in packages:
            if any(module == root or module.startswith(root + ".") for root in roots):
                return suspect
    return suspects[0] if len(suspects) == 1 else Suspect(" or ".join(suspect.what for suspect in suspects))


@contextlib.contextmanager
def guard(stage: str, *suspects: Suspect, resumable: bool = False) -> Iterator[None]:
    """Turn anything plugin code raises inside the block into a `PluginFailure` naming the culprit."""
    try:
        yield
    except _passthrough():
        raise
    except Exception as error:  # noqa: BLE001 - the boundary: every failure of plugin code is named
        suspect = culprit(error, suspects)
        raise PluginFailure(suspect.what, stage, one_line(error), resumable=resumable, error=error) from error


def hook_plugin(hook: Any, error: BaseException) -> str | None:
    """The name of the plugin whose implementation of `hook` raised `error` (by its code in the traceback)."""
    codes = {frame.f_code for frame in _frames(error)}
    for impl in hook.get_hookimpls():
        function = getattr(impl.function, "__func__", impl.function)
        if getattr(function, "__code__", None) in codes:
            return impl.plugin_name
    return None


def notify(plugins: Any, hook_name: str, where: str, /, *, resumable: bool = False, detail: str = "",
           **kwargs: Any) -> None:
    """Call a lifecycle hook with `kwargs`; an implementation that raises is a `PluginFailure` naming its
    plugin and `where` (the stage, e.g. "epoch hook")."""
    hook = getattr(plugins.hook, hook_name)
    try:
        hook(**kwargs)
    except _passthrough():
        raise
    except Exception as error:  # noqa: BLE001
        raise hook_failure(plugins, hook, error, where, resumable, detail) from error


def hook_failure(plugins: Any, hook: Any, error: BaseException, stage: str, resumable: bool,
                 detail: str = "") -> PluginFailure:
    name = hook_plugin(hook, error) or "?"
    origin = plugins.origins.get(name)
    what = origin.label() if origin else f"plugin '{name}'"
    return PluginFailure(what, f"{stage} ({hook.name}{', ' + detail if detail else ''})", one_line(error),
                         resumable=resumable, error=error)


def notify_error(plugins: Any, run: Any, error: BaseException) -> None:
    """``crs_bench_run_error`` observers: one that raises itself is reported, never masks the run's error."""
    hook = plugins.hook.crs_bench_run_error
    for impl in reversed(hook.get_hookimpls()):
        try:
            given = {"run": run, "error": error}
            impl.function(**{name: given[name] for name in impl.argnames})
        except Exception as failure:  # noqa: BLE001
            origin = plugins.origins.get(impl.plugin_name)
            who = origin.label() if origin else f"plugin '{impl.plugin_name}'"
            print(f"bench: warning: {who} failed in crs_bench_run_error: {one_line(failure)}", file=sys.stderr)
