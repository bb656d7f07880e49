"""What a registered component accepts, for `bench plugins NAME`, ``bench plugins --json`` and
``bench run --dry-run``: its parameters with their types and defaults, read from the factory's signature
(a metric family's from its `MetricSpec`).

A lazily registered factory (``"package.module:Class"``) is read from its source with `ast`, without
importing it, so listing every component's parameters stays free of torch; when the source does not say
(a decorated factory, an inherited ``__init__`` from another package), the factory is imported.
"""
from __future__ import annotations

import ast
import importlib.util
import inspect
import json
from pathlib import Path
from typing import Any

# positional arguments the harness passes before the parameters (datasets: data_dir; models... : ctx)
FACTORY_POSITIONAL = {"datasets": 1, "models": 1, "losses": 1, "augmenters": 1, "retrievers": 1, "generators": 1,
                      "metrics": 0, "llm_backends": 0, "executors": 0}
HARNESS_KEYWORDS = {"llm_backends": {"cache_dir"}}  # keywords the harness passes itself
REQUIRED = "(required)"


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def parameters(component: Any) -> list[dict[str, Any]]:
    """``[{name, type, default, required, help}]`` in signature order; a trailing ``{"name": "**kwargs"}``
    entry when the factory takes any keyword."""
    if component.spec is not None:
        return [{"name": name, "type": param.type.__name__, "default": _jsonable(param.default), "required": False,
                 "help": param.help} for name, param in component.spec.params.items()]
    skip = FACTORY_POSITIONAL.get(component.kind, 1)
    ignored = HARNESS_KEYWORDS.get(component.kind, set())
    found = _static(component.factory, skip) if isinstance(component.factory, str) else None
    if found is None:
        found = _inspected(component.resolve(), skip)
    return [entry for entry in found if entry["name"] not in ignored]


def _entry(name: str, annotation: str | None, has_default: bool, default: Any) -> dict[str, Any]:
    inferred = type(default).__name__ if has_default and isinstance(default, (bool, int, float, str)) else None
    return {"name": name, "type": annotation or inferred, "default": _jsonable(default) if has_default else None,
            "required": not has_default}


def _inspected(factory: Any, skip: int) -> list[dict[str, Any]]:
    from .config import _annotations, _describe

    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return [{"name": "**kwargs", "type": None, "default": None, "required": False}]
    listed = list(signature.parameters.values())[skip:]
    named = [p for p in listed if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    hints = _annotations(factory, named)
    result = []
    for parameter in named:
        hint = hints.get(parameter.name, inspect.Parameter.empty)
        annotation = None if hint is inspect.Parameter.empty else _describe(hint).replace(" or ", " | ")
        if annotation is None and isinstance(parameter.annotation, str) and parameter.annotation:
            annotation = parameter.annotation
        has_default = parameter.default is not inspect.Parameter.empty
        result.append(_entry(parameter.name, annotation, has_default, parameter.default if has_default else None))
    if any(p.kind is p.VAR_KEYWORD for p in listed):
        result.append({"name": "**kwargs", "type": None, "default": None, "required": False})
    return result


# --- reading a factory from its source, without importing it --------------------------------------


def _static(factory: str, skip: int) -> list[dict[str, Any]] | None:
    module_name, _, attribute = factory.partition(":")
    definition = _definition(module_name, attribute, depth=0)
    if definition is None:
        return None
    node, module_name = definition
    if isinstance(node, ast.ClassDef):
        init = _class_init(node, module_name, depth=0)
        if init is None:
            return None
        node, skip = init, skip + 1  # self
    return _arguments(node.args, skip)


def _source(module_name: str) -> ast.Module | None:
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    try:
        return ast.parse(Path(spec.origin).read_text())
    except (OSError, SyntaxError):
        return None


def _definition(module_name: str, name: str, depth: int) -> tuple[ast.AST, str] | None:
    """The ``def``/``class`` named `name` in `module_name`, following ``from x import name`` (3 levels)."""
    tree = _source(module_name)
    if tree is None or depth > 3:
        return None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            if isinstance(node, ast.FunctionDef) and node.decorator_list:
                return None  # a decorator may change the signature: import instead
            return node, module_name
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    source = _absolute(module_name, node)
                    return _definition(source, alias.name, depth + 1) if source else None
    return None


def _absolute(module_name: str, node: ast.ImportFrom) -> str | None:
    if not node.level:
        return node.module
    spec = importlib.util.find_spec(module_name)
    package = module_name if spec is not None and spec.submodule_search_locations else module_name.rpartition(".")[0]
    parts = package.split(".")
    if node.level - 1 > len(parts):
        return None
    base = ".".join(parts[:len(parts) - (node.level - 1)])
    return f"{base}.{node.module}" if node.module else base


def _class_init(node: ast.ClassDef, module_name: str, depth: int) -> ast.FunctionDef | None:
    """The class's own ``__init__``, else its first base's (in the same module or imported)."""
    if depth > 3 or node.decorator_list:
        return None
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            return item
    for base in node.bases:
        if isinstance(base, ast.Name):
            found = _definition(module_name, base.id, 0)
            if found is not None and isinstance(found[0], ast.ClassDef):
                return _class_init(found[0], found[1], depth + 1)
            if found is None and base.id in ("object",):
                return None
    return None


def _arguments(args: ast.arguments, skip: int) -> list[dict[str, Any]] | None:
    positional = [*args.posonlyargs, *args.args]
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = list(zip(positional, defaults))[skip:] + list(zip(args.kwonlyargs, args.kw_defaults))
    result = []
    for arg, default in pairs:
        annotation = ast.unparse(arg.annotation).strip("'\"") if arg.annotation is not None else None
        if default is None:
            result.append(_entry(arg.arg, annotation, False, None))
            continue
        try:
            value = ast.literal_eval(default)
        except (ValueError, SyntaxError, TypeError):
            return None  # a computed default (a constant, a call): import the factory to read its value
        result.append(_entry(arg.arg, annotation, True, value))
    if args.kwarg is not None:
        result.append({"name": "**kwargs", "type": None, "default": None, "required": False})
    return result


# --- the full description ---------------------------------------------------------------------------


def describe(component: Any) -> dict[str, Any]:
    """Everything `bench plugins NAME` shows: the registry facts, the parameters, the factory and the
    interface it must implement, and a metric family's declared keys and columns."""
    from .api.kinds import kind_of

    kind = kind_of(component.kind)
    info = component.as_dict()
    info["params"] = parameters(component)
    info["factory"] = component.factory if isinstance(component.factory, str) else \
        f"{getattr(component.factory, '__module__', '?')}:{getattr(component.factory, '__qualname__', '?')}"
    info["interface"] = kind.interface
    info["signature"] = kind.factory
    if component.spec is not None:
        spec = component.spec
        info["metric"] = {"task": spec.task, "keys": dict(spec.keys), "columns": list(spec.columns),
                          "significance": list(spec.significance), "primary": spec.primary}
    return info


def resolved(component: Any, given: dict[str, Any]) -> dict[str, Any]:
    """The parameters a component will be built with: its factory defaults overridden by `given`, read
    without importing the factory (for `bench plugins` and `--dry-run`)."""
    values = {entry["name"]: entry["default"] for entry in parameters(component)
              if not entry["required"] and not entry["name"].startswith("**")}
    values.update(given)
    return values
