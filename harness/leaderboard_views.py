"""Focused leaderboard views: the rows that some recipes produce, with chosen columns.

The main tables hold every configuration; a study (a loss comparison, a system and its ablations) is read
best as its own table. `results/views.yaml` lists views; each selects rows by the recipes that produced
them (the config hashes a recipe expands to, seeds aside), so a view never depends on hand-picked run
directories and picks up new seeds automatically. Views only select and re-present rows of the main
tables: their numbers are the same records'.

```yaml
views:
  - title: Loss comparison, KBRD
    recipes: [benchmarks/loss_comparison.yaml, benchmarks/loss_comparison_cosine.yaml]
    columns: [recall@10, tail_recall@10, pwp@10, arp@10]   # optional; default: the main columns
    settings: [standard, novel]                             # optional; default: every setting
    splits: official                                        # optional; official (default), resampled or all
```

`splits` picks the main tables a view draws on: those of the official split, those that aggregate the
configs run on resampled splits over splits x seeds (`dataset.params.resplit`), or both.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError
from .registry import RegistryError

VIEWS_FILE = "views.yaml"
VIEW_KEYS = {"title", "recipes", "columns", "settings", "note", "splits"}
VIEW_SPLITS = ("official", "resampled", "all")


class ViewError(ConfigError):
    """A malformed views file; the message names the file, the view and the field."""


@dataclass
class View:
    title: str
    recipes: list[str]
    config_hashes: set[str]
    columns: list[str] | None = None
    settings: list[str] | None = None
    note: str = ""
    splits: str = "official"
    tables: list[Any] = field(default_factory=list)  # filled by select_rows


def load_views(results_dir: Path, root: Path | None = None, registries: Any = None) -> list[View]:
    """Views of `results_dir/views.yaml` (none when the file is absent); recipe paths are relative to `root`
    (default: the results directory's parent, the repository). A recipe's runs are matched by config hash,
    with the components' defaults filled in from `registries` (default: the built-in plugins) as a run
    stores them."""
    from .config import config_hash, load_recipe, resolve
    from .runner import resolve_defaults

    if registries is None:
        from .plugin_manager import load_plugins

        registries = load_plugins(autoload=False).registries

    path = results_dir / VIEWS_FILE
    if not path.is_file():
        return []
    root = root if root is not None else results_dir.resolve().parent
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise ViewError(f"{path}:{mark.line + 1 if mark else 1}: malformed YAML") from None
    entries = data.get("views") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ViewError(f"{path}: expected a top-level 'views:' list")
    views = []
    for position, entry in enumerate(entries, start=1):
        where = f"{path}: view {position}"
        if not isinstance(entry, dict) or not isinstance(entry.get("title"), str):
            raise ViewError(f"{where}: each view is a mapping with a 'title'")
        unknown = sorted(set(entry) - VIEW_KEYS)
        if unknown:
            raise ViewError(f"{where} ('{entry['title']}'): unknown field(s) {unknown}; allowed: {sorted(VIEW_KEYS)}")
        for key in ("recipes", "columns", "settings"):
            value = entry.get(key)
            if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise ViewError(f"{where} ('{entry['title']}'): field '{key}' must be a list of strings")
        if entry.get("splits", "official") not in VIEW_SPLITS:
            raise ViewError(f"{where} ('{entry['title']}'): field 'splits' must be one of {', '.join(VIEW_SPLITS)}, "
                            f"got {entry['splits']!r}")
        if not entry.get("recipes"):
            raise ViewError(f"{where} ('{entry['title']}'): field 'recipes' must name at least one recipe")
        hashes: set[str] = set()
        for recipe in entry["recipes"]:
            try:
                for config in resolve(load_recipe(root / recipe)):
                    # runs store their defaults; schema-2 runs (defaults_filled: false) hashed the given params
                    hashes |= {config_hash(resolve_defaults(registries, config)), config_hash(config)}
            except (ConfigError, RegistryError) as error:
                raise ViewError(f"{where} ('{entry['title']}'): field 'recipes': {error}") from None
        views.append(View(entry["title"], entry["recipes"], hashes, entry.get("columns"), entry.get("settings"),
                          entry.get("note", ""), entry.get("splits", "official")))
    return views


def select_rows(views: list[View], tables: list[Any]) -> None:
    """Give each view its tables: the main tables' rows whose config hash a view's recipes produce."""
    for view in views:
        view.tables = []
        for table in tables:
            if view.settings is not None and table.setting not in view.settings:
                continue
            if view.splits != "all" and table.splits != view.splits:
                continue
            rows = [row for row in table.rows if row.config_hash in view.config_hashes]
            if rows:
                view.tables.append(table.with_rows(rows))
