"""`bench data info DATASET`: split sizes, sample counts per setting, popularity tiers, KG size, plot.

All popularity figures come from `harness.popularity.compute_statistics` over the *training*
dialogues (PROTOCOL.md §4.1); nothing here recomputes them differently.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from .data import SETTINGS, SPLITS, Dataset
from .popularity import TIERS, ItemStatistics
from .results import write_atomic

TIER_COLUMNS = (*TIERS, "cold")


def describe(dataset: Dataset, stats: ItemStatistics) -> dict[str, Any]:
    """A JSON-ready summary of the dataset as the harness sees it."""
    tiers = np.asarray(stats.tiers)
    cold = np.asarray(stats.cold, dtype=bool)
    splits: dict[str, Any] = {}
    for name in SPLITS:
        split = dataset.splits.get(name)
        if split is None:
            continue
        entry: dict[str, Any] = {
            "dialogues": len(split.dialogues),
            "synthetic_dialogues": sum(1 for d in split.dialogues if d.synthetic),
            "turns": sum(len(d.turns) for d in split.dialogues),
            "conversation_samples": len(split.conv_samples),
            "rec_samples": {},
            "contexts": {},
            "distinct_labels": {},
            "label_tiers": {},
        }
        for setting in SETTINGS:
            samples = split.rec_samples_for(setting)
            labels = np.fromiter((s.label for s in samples), dtype=np.int64, count=len(samples))
            entry["rec_samples"][setting] = len(samples)
            entry["contexts"][setting] = len({s.context_id for s in samples})
            entry["distinct_labels"][setting] = int(np.unique(labels).size)
            label_tiers = tiers[labels] if labels.size else np.asarray([], dtype=str)
            counts = {tier: int((label_tiers == tier).sum()) for tier in TIERS}
            counts["cold"] = int(cold[labels].sum()) if labels.size else 0
            entry["label_tiers"][setting] = counts
        splits[name] = entry
    kg = dataset.kg
    return {
        "dataset": dataset.name,
        "fingerprint": dataset.fingerprint,
        "items": dataset.num_items,
        "splits": splits,
        "popularity": {**stats.summary(), "items_never_in_train": int(cold.sum()),
                       "max": int(max(stats.popularity, default=0))},
        "kg": None if kg is None else {
            "entities": kg.num_entities, "relations": kg.num_relations, "triples": len(kg),
            "items_without_neighbours": sum(1 for item, n in zip(kg.item_entities, _degrees(kg)) if n == 0),
        },
        "partial_train": bool(dataset.info.get("partial_train", False)),
        "notes": [note for note in (dataset.info.get("partial_train_note"),
                                    dataset.info.get("kg") if isinstance(dataset.info.get("kg"), str) else None)
                  if note],
    }


def _degrees(kg) -> list[int]:
    """Non-self-loop degree of each item entity (both directions)."""
    heads = np.asarray(kg.heads, dtype=np.int64)
    tails = np.asarray(kg.tails, dtype=np.int64)
    keep = heads != tails
    degree = np.bincount(np.concatenate([heads[keep], tails[keep]]), minlength=kg.num_entities)
    return [int(degree[entity]) for entity in kg.item_entities]


def render(info: dict[str, Any]) -> str:
    """Plain-text tables of `describe`'s output."""
    splits = info["splits"]
    names = list(splits)
    lines = [f"dataset {info['dataset']}  items {info['items']:,}"
             + (f"  fingerprint {info['fingerprint'][:16]}" if info.get("fingerprint") else "")]
    rows: list[tuple[str, list[str]]] = [
        ("dialogues", [f"{splits[n]['dialogues']:,}" for n in names]),
        ("merged turns", [f"{splits[n]['turns']:,}" for n in names]),
        ("conversation samples", [f"{splits[n]['conversation_samples']:,}" for n in names]),
    ]
    for setting in SETTINGS:
        rows.append((f"rec samples ({setting})", [f"{splits[n]['rec_samples'][setting]:,}" for n in names]))
        rows.append((f"contexts ({setting})", [f"{splits[n]['contexts'][setting]:,}" for n in names]))
        rows.append((f"distinct labels ({setting})", [f"{splits[n]['distinct_labels'][setting]:,}" for n in names]))
    lines += ["", _table(["", *names], [[label, *values] for label, values in rows])]

    pop = info["popularity"]
    sizes = pop["tier_sizes"]
    lines += ["", f"popularity: {pop['unit']}, head >= {pop['head_min']}, tail <= {pop['tail_max']} (cold = never in train)"]
    tier_rows = [["catalogue items", *[f"{sizes[t]:,}" for t in TIER_COLUMNS]]]
    for name in ("valid", "test"):
        if name in splits:
            for setting in SETTINGS:
                counts = splits[name]["label_tiers"][setting]
                total = splits[name]["rec_samples"][setting]
                tier_rows.append([f"{name} labels, {setting} ({total:,})", *[f"{counts[t]:,}" for t in TIER_COLUMNS]])
    lines.append(_table(["", *TIER_COLUMNS], tier_rows))

    kg = info["kg"]
    lines.append("")
    lines.append("knowledge graph: none" if kg is None else
                 f"knowledge graph: {kg['entities']:,} entities, {kg['relations']} relations, {kg['triples']:,} triples, "
                 f"{kg['items_without_neighbours']:,} items without neighbours")
    for note in info.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    def fmt(row: list[str]) -> str:
        return "  ".join(str(cell).ljust(widths[0]) if i == 0 else str(cell).rjust(widths[i]) for i, cell in enumerate(row))
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *(fmt(row) for row in rows)])


def plot_popularity(stats: ItemStatistics, path: Path) -> None:
    """Log-log rank vs (count + 1) of training popularity, tiers shaded; written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.sort(np.asarray(stats.popularity, dtype=np.int64))[::-1]
    ranks = np.arange(1, counts.size + 1)
    n_head = int((counts >= stats.thresholds.head_min).sum())
    n_tail = int((counts <= stats.thresholds.tail_max).sum())
    n_cold = int((counts == 0).sum())
    bounds = {"head": (0.5, n_head + 0.5), "body": (n_head + 0.5, counts.size - n_tail + 0.5),
              "tail": (counts.size - n_tail + 0.5, counts.size + 0.5)}
    colours = {"head": "tab:red", "body": "tab:orange", "tail": "tab:blue"}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        for tier, (low, high) in bounds.items():
            if high > low:
                ax.axvspan(low, high, color=colours[tier], alpha=0.15, label=f"{tier} ({int(high - low):,})")
        if n_cold:
            ax.axvspan(counts.size - n_cold + 0.5, counts.size + 0.5, facecolor="none", hatch="//",
                       edgecolor="tab:blue", alpha=0.4, label=f"cold, count 0 ({n_cold:,})")
        ax.plot(ranks, counts + 1, color="black", linewidth=1.2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("item rank by training popularity")
        ax.set_ylabel("training dialogues mentioning the item + 1")
        ax.set_title(f"popularity (head >= {stats.thresholds.head_min}, tail <= {stats.thresholds.tail_max})")
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        image = io.BytesIO()
        fig.savefig(image, dpi=120, format="png")
        write_atomic(Path(path), image.getvalue())  # a killed write never leaves half a PNG
    finally:
        plt.close(fig)
