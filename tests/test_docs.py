"""The plugin docs cover the whole public API, and the architecture page names every core module.

docs/plugins.md: every hook in `harness.api.hookspecs` has a heading ``name(arg, ...) -> ...`` whose
arguments are the hook's, in order; every name in `harness.api.__all__` has a heading of its own, except
the plain constants and the data classes, which must be backticked somewhere in the reference section.
docs/architecture.md: every ``harness/*.py`` and ``harness/api/*.py`` is mentioned by its path.
"""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import harness.api
from harness.api import hookspecs

ROOT = Path(__file__).resolve().parents[1]
PLUGINS_DOC = ROOT / "docs" / "plugins.md"
ARCHITECTURE_DOC = ROOT / "docs" / "architecture.md"

CONSTANTS = {"HIGHER", "LOWER", "COUNT", "INFO", "LIST_LENGTH"}
DATA_MODEL = {"Catalogue", "ConvSample", "DataError", "Dataset", "Dialogue", "KnowledgeGraph", "RecSample",
              "Split", "Turn", "ItemStatistics"}
HOOKS = sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
               if name.startswith("crs_bench_"))


def headings() -> dict[str, str]:
    """First word of every Markdown heading (backticks and any argument list removed) -> heading text."""
    found = {}
    for line in PLUGINS_DOC.read_text().splitlines():
        match = re.match(r"#{2,6}\s+`?([A-Za-z_][A-Za-z0-9_.]*)", line)
        if match:
            found[match.group(1)] = line
    return found


def reference_mentions() -> set[str]:
    text = PLUGINS_DOC.read_text()
    reference = text[text.index("\n## Reference"):]
    return {span.strip() for span in re.findall(r"`([^`\n]+)`", reference)}


def test_every_hook_has_a_heading_with_its_arguments():
    assert len(HOOKS) >= 19  # 9 registration + 2 stage + 8 lifecycle
    found = headings()
    for name in HOOKS:
        assert name in found, f"docs/plugins.md has no heading for hook {name}"
        match = re.search(re.escape(name) + r"\(([^)]*)\)\s*->", found[name])
        assert match, f"the heading of {name} must read '{name}(args) -> result': {found[name]!r}"
        documented = [arg.strip() for arg in match.group(1).split(",") if arg.strip()]
        actual = list(inspect.signature(getattr(hookspecs, name)).parameters)
        assert documented == actual, f"{name}: docs/plugins.md says {documented}, hookspecs.py says {actual}"


def test_every_exported_name_is_documented():
    found, mentions = headings(), reference_mentions()
    for name in harness.api.__all__:
        if name in CONSTANTS or name in DATA_MODEL:
            assert name in found or name in mentions, \
                f"docs/plugins.md does not mention `{name}` in its reference section"
        else:
            assert name in found, f"docs/plugins.md has no heading for harness.api.{name}"


def test_exemptions_are_exported_names():
    # a name dropped from the API must leave the exemption lists too, so they cannot hide anything
    assert (CONSTANTS | DATA_MODEL) <= set(harness.api.__all__)


def test_every_core_module_is_in_the_architecture_page():
    text = ARCHITECTURE_DOC.read_text()
    modules = sorted((ROOT / "harness").glob("*.py")) + sorted((ROOT / "harness" / "api").glob("*.py"))
    assert modules
    for path in modules:
        relative = path.relative_to(ROOT).as_posix()
        assert relative in text, f"docs/architecture.md does not mention {relative}"
