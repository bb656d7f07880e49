"""Score a split once, build the top-50 lists of both settings, and compute the metric families.

Scores are computed per distinct context in batches under `torch.no_grad`, on the model's device; the
`novel` lists come from the same scores with the context items masked, so both settings always see the
same model output (PROTOCOL.md §2).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .data import SETTINGS, Dataset, RecSample, Split
from .popularity import ItemStatistics
from .ranking import (LIST_LENGTH, MetricContext, RankedLists, context_item_mask, context_representatives,
                      raise_on_problems, top_items)


class ScoreAdjusted:
    """Ranks with `adjuster.adjust_scores(scores)`: post-hoc logit adjustment (Menon et al.) at test time."""

    def __init__(self, model: Any, adjuster: Any):
        self.model, self.adjuster = model, adjuster
        self.trainable = model.trainable

    def make_batch(self, split: Split, samples: Sequence[RecSample]) -> Any:
        return self.model.make_batch(split, samples)

    def scores(self, batch: Any):
        return self.adjuster.adjust_scores(self.model.scores(batch))

    def eval(self) -> None:
        self.model.eval()


def rank_split(model: Any, split: Split, batch_size: int, settings: Sequence[str] = SETTINGS,
               progress: Any = None) -> dict[str, RankedLists]:
    """Score each distinct context once (batched, on the model's device) and take the top 50 per setting."""
    import torch

    from .distributed import current, gather_rows, shard

    contexts, _ = context_representatives(split.rec_samples)
    world = current()  # several processes: each ranks a strided share of the contexts, gathered below
    positions = shard(range(len(contexts)), world) if world.size > 1 else list(range(len(contexts)))
    on_device: dict[str, list[Any]] = {setting: [] for setting in settings}
    checks: list[Any] = []  # NaN and candidate-count flags, read back once after the last batch
    if model.trainable:
        model.eval()
    with torch.no_grad():
        for start in range(0, len(positions), batch_size):
            chunk = [contexts[i] for i in positions[start:start + batch_size]]
            scores = model.scores(model.make_batch(split, chunk)).float()
            if "standard" in on_device:
                on_device["standard"].append(top_items(scores, LIST_LENGTH, checks=checks))
            if "novel" in on_device:
                excluded = context_item_mask(chunk, tuple(scores.shape), scores.device)
                on_device["novel"].append(top_items(scores, LIST_LENGTH, excluded, checks=checks))
            if progress is not None:
                progress.update(len(chunk))
    raise_on_problems(checks)
    tops: dict[str, list[np.ndarray]] = {setting: [torch.cat(parts).cpu().numpy()] if parts else []
                                         for setting, parts in on_device.items()}
    if world.size > 1:  # every rank gets every context's lists, in context order
        mine = {setting: np.concatenate(parts) if parts else np.zeros((0, LIST_LENGTH), dtype=np.int64)
                for setting, parts in tops.items()}
        rows = gather_rows({position: {s: mine[s][row] for s in mine} for row, position in enumerate(positions)},
                           world)
        tops = {setting: [np.stack([rows[i][setting] for i in range(len(contexts))])] if contexts else []
                for setting in settings}
    return lists_from_tops(split.rec_samples, {setting: (np.concatenate(parts) if parts else
                                                          np.zeros((0, LIST_LENGTH), dtype=np.int64))
                                               for setting, parts in tops.items()})


def lists_from_tops(samples: Sequence[RecSample], tops: dict[str, np.ndarray]) -> dict[str, RankedLists]:
    """{setting: RankedLists} from per-context top lists: ``tops[setting]`` is [n_contexts, k] item indices,
    one row per distinct context in the order of `harness.ranking.context_representatives(samples)`.

    The `novel` lists keep only novel samples (their contexts' rows must already exclude the context
    items). Stage plugins that rank their own way build their lists with this."""
    _, sample_context = context_representatives(samples)
    result: dict[str, RankedLists] = {}
    for setting, top in tops.items():
        top = np.asarray(top, dtype=np.int64)
        keep = np.ones(len(samples), dtype=bool) if setting == "standard" else \
            np.fromiter((s.is_novel for s in samples), dtype=bool, count=len(samples))
        rows = sample_context[keep]
        used, remapped = np.unique(rows, return_inverse=True)
        result[setting] = RankedLists(
            setting=setting,
            top=top[used],
            sample_context=remapped.astype(np.int64),
            labels=np.fromiter((s.label for s in samples), dtype=np.int64, count=len(samples))[keep],
            sample_ids=[s.uid for s, k in zip(samples, keep) if k],
        )
    return result


def metric_context(dataset: Dataset, stats: ItemStatistics) -> MetricContext:
    neighbours = None
    if dataset.kg is not None:
        entity_neighbours = dataset.kg.neighbours()
        neighbours = [entity_neighbours[entity] for entity in dataset.kg.item_entities]
    return MetricContext(
        num_items=dataset.num_items,
        popularity=np.asarray(stats.popularity, dtype=np.int64),
        tiers=np.asarray(stats.tiers),
        item_neighbours=neighbours,
    )


def compute_metrics(lists: dict[str, RankedLists], families: dict[str, Any], ctx: MetricContext, *,
                    split: str = "test", resumable: bool = False) -> dict[str, dict]:
    """{setting: {key: value}} from the built ranking families (`metric_families.Family`); a family that
    raises or produces a non-finite value is a `PluginFailure` naming it, the stage and the setting."""
    from .metric_families import computing, merge_values

    result = {}
    for setting, ranked in lists.items():
        values = {}
        for name, family in families.items():
            with computing(family, f"metric compute ({split}, {setting})", resumable=resumable):
                values[name] = family.instance.compute(ranked, ctx)
        result[setting] = merge_values(values, families, where=f"metric compute ({split}, {setting})",
                                       resumable=resumable)
    return result


def sample_rows(lists: dict[str, RankedLists], item_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Per test sample and setting: id, context row, label and top-50 list as native item ids."""
    ids = np.asarray(item_ids)
    rows = []
    for setting, ranked in lists.items():
        native_top = ids[ranked.top].tolist()
        native_labels = ids[ranked.labels].tolist()
        for position, uid in enumerate(ranked.sample_ids):
            row = int(ranked.sample_context[position])
            rows.append({"id": uid, "setting": setting, "context": row, "label": native_labels[position],
                         "top": native_top[row]})
    return rows


def lists_from_rows(rows: Sequence[dict[str, Any]], item_ids: Sequence[int]) -> dict[str, RankedLists]:
    """Inverse of `sample_rows`: rebuild the lists of each setting from a stored samples file."""
    index = {item_id: position for position, item_id in enumerate(item_ids)}
    by_setting: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if "top" in row:
            by_setting.setdefault(row["setting"], []).append(row)
    result = {}
    for setting, selected in by_setting.items():
        result[setting] = RankedLists.from_sample_lists(
            setting,
            [row["id"] for row in selected],
            [row["context"] for row in selected],
            [index[row["label"]] for row in selected],
            [[index[item] for item in row["top"]] for row in selected],
        )
    return result

