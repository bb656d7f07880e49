"""Published reference numbers (`results/published.yaml`), shown by the leaderboard beside the measured
rows of a table, never among them: they are not runs of this harness, so they are never ranked, bolded or
tested, and they come with their source and with notes on what is comparable.

```yaml
conversation:
  - dataset: inspired            # the leaderboard tables (dataset name, task conv, setting) they join
    setting: all                 # optional, default all: the full test set (Distinct depends on its size)
    title: LumiCRS Table 6
    source: LumiCRS paper, Table 6 (...)
    columns: {BLEU-2: bleu2_legacy, ROUGE-L: rougeL}   # published column -> harness metric key
    comparable: [bleu2_legacy]   # the keys whose published values are comparable in kind
    notes: [...]                 # shown under the rows
    rows:
      - {model: LumiCRS, evaluator: UniCRS-style, values: {BLEU-2: 0.044, ROUGE-L: 0.242}}
```
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError

PUBLISHED_FILE = "published.yaml"
TASKS = {"conversation": "conv"}
ENTRY_KEYS = {"dataset", "setting", "title", "source", "columns", "comparable", "notes", "rows"}
ROW_KEYS = {"model", "evaluator", "values"}


@dataclass(frozen=True)
class PublishedRow:
    model: str
    evaluator: str
    values: dict[str, float]  # harness metric key -> published value


@dataclass(frozen=True)
class PublishedTable:
    """Published rows for the leaderboard tables of one dataset, task and setting."""

    dataset: str
    task: str
    setting: str
    title: str
    source: str
    columns: dict[str, str]  # published column -> harness key, in the published order
    comparable: tuple[str, ...]
    notes: tuple[str, ...]
    rows: tuple[PublishedRow, ...] = field(default_factory=tuple)

    def keys(self) -> list[str]:
        return list(self.columns.values())

    def label(self, key: str) -> str:
        """``bleu2_legacy (BLEU-2)``: the harness key with the published column name."""
        names = [name for name, mapped in self.columns.items() if mapped == key]
        return f"{key} ({names[0]})" if names and names[0] != key else key

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "source": self.source, "columns": dict(self.columns),
                "comparable": list(self.comparable), "notes": list(self.notes),
                "rows": [{"model": r.model, "evaluator": r.evaluator, "metrics": dict(r.values)} for r in self.rows]}


class PublishedError(ConfigError):
    """A malformed published-numbers file; the message names the file, the entry and the field."""


def load_published(results_dir: Path) -> list[PublishedTable]:
    """The entries of `results_dir/published.yaml` ([] without the file)."""
    path = Path(results_dir) / PUBLISHED_FILE
    if not path.is_file():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise PublishedError(f"{path}: malformed YAML: {error}") from None
    if not isinstance(data, dict) or set(data) - set(TASKS):
        raise PublishedError(f"{path}: top-level keys must be among {sorted(TASKS)}")
    tables = []
    for section, task in TASKS.items():
        entries = data.get(section) or []
        if not isinstance(entries, list):
            raise PublishedError(f"{path}: '{section}' must be a list of entries")
        tables += [_entry(path, f"{section}[{i}]", task, entry) for i, entry in enumerate(entries)]
    return tables


def _entry(path: Path, where: str, task: str, entry: Any) -> PublishedTable:
    def fail(message: str) -> PublishedError:
        return PublishedError(f"{path}: {where}: {message}")

    if not isinstance(entry, dict):
        raise fail("must be a mapping")
    unknown = sorted(set(entry) - ENTRY_KEYS)
    if unknown:
        raise fail(f"unknown field(s) {unknown}")
    for key in ("dataset", "source", "columns", "rows"):
        if not entry.get(key):
            raise fail(f"field '{key}' is required")
    columns = entry["columns"]
    if not isinstance(columns, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in columns.items()):
        raise fail("field 'columns' must map published column names to harness metric keys")
    comparable = entry.get("comparable") or []
    if not isinstance(comparable, list) or set(comparable) - set(columns.values()):
        raise fail(f"field 'comparable' must list harness keys of 'columns', got {comparable!r}")
    notes = entry.get("notes") or []
    if not isinstance(notes, list) or not all(isinstance(note, str) for note in notes):
        raise fail("field 'notes' must be a list of strings")
    rows = []
    for i, row in enumerate(entry["rows"] if isinstance(entry["rows"], list) else [None]):
        if not isinstance(row, dict) or set(row) - ROW_KEYS or not isinstance(row.get("model"), str):
            raise fail(f"rows[{i}] must be a mapping with model, evaluator and values")
        values = row.get("values") or {}
        bad = [k for k, v in values.items() if k not in columns or isinstance(v, bool) or not isinstance(v, (int, float))]
        if bad:
            raise fail(f"rows[{i}] ('{row['model']}'): value(s) {bad} name no column or are not numbers")
        rows.append(PublishedRow(row["model"], str(row.get("evaluator", "")),
                                 {columns[k]: float(v) for k, v in values.items()}))
    return PublishedTable(str(entry["dataset"]), task, str(entry.get("setting", "all")),
                          str(entry.get("title", "published")), str(entry["source"]), dict(columns),
                          tuple(comparable), tuple(notes), tuple(rows))


def for_table(published: list[PublishedTable], dataset: str, task: str, setting: str) -> list[PublishedTable]:
    return [p for p in published if (p.dataset, p.task, p.setting) == (dataset, task, setting)]
