"""`bench samples`: stored conversation outputs of one or more runs, for samples drawn by a seed.

Why: a paper (or a closing note) that quotes generated responses should not pick its favourites. The samples
shown are a seeded draw from the conversation samples every given run scored, the same draw for the same
seed and runs, each with its context (from the dataset), reference and every run's response.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .data import RECOMMENDER
from .errors import RunError
from .stored_runs import StoredRun


def draw(ids: Sequence[str], n: int, seed: int) -> list[str]:
    """`n` ids (all when fewer) drawn without replacement by `seed` from the sorted ids, in sorted order."""
    ordered = sorted(ids)
    if n >= len(ordered):
        return ordered
    chosen = np.random.default_rng(seed).choice(len(ordered), size=n, replace=False)
    return [ordered[i] for i in sorted(chosen)]


def common_ids(runs: Sequence[StoredRun]) -> list[str]:
    """The conversation sample ids every run scored (a run of another subset shares only the overlap)."""
    sets = [{row["id"] for row in run.responses} for run in runs]
    if not sets or not sets[0]:
        raise RunError(f"{runs[0].run_dir if runs else 'no run'}: the run has no conversation outputs")
    return sorted(set.intersection(*sets))


def render_samples(runs: Sequence[StoredRun], n: int = 5, seed: int = 0, turns: int = 4) -> str:
    """Markdown: for each drawn sample, the last `turns` context turns, the reference (item names masked, as
    scored) and each run's response as generated (scored with its item names masked), with the item its
    recommender ranked first."""
    ids = draw(common_ids(runs), n, seed)
    split = runs[0].test_split
    samples = {sample.uid: sample for sample in split.conv_samples}
    titles = runs[0].catalogue.titles
    index_of = {str(item_id): i for i, item_id in enumerate(runs[0].catalogue.ids)}
    rows = [{row["id"]: row for row in run.responses} for run in runs]
    lines = [f"{len(ids)} of {len(common_ids(runs))} conversation samples, drawn with seed {seed}", ""]
    for number, uid in enumerate(ids, 1):
        context = split.context(samples[uid]) if uid in samples else []
        lines.append(f"### {number}. `{uid}`")
        if len(context) > turns:
            lines.append(f"(… {len(context) - turns} earlier turns)  ")
        for turn in context[-turns:]:
            lines.append(f"**{'System' if turn.role == RECOMMENDER else 'User'}:** {turn.text}  ")
        lines.append(f"**Reference** (items masked): {rows[0][uid]['reference']}  ")
        for run, by_id in zip(runs, rows):
            row = by_id[uid]
            top = _title(row.get("recommended"), index_of, titles)
            lines.append(f"**{_label(run)}** (top item: {top}): {row.get('response', row['prediction'])}  ")
        lines.append("")
    return "\n".join(lines)


def _title(item_id: Any, index_of: dict[str, int], titles: Sequence[str]) -> str:
    if item_id in (None, "", "None"):
        return "none"
    index = index_of.get(str(item_id))
    return titles[index] if index is not None else str(item_id)


def _label(run: StoredRun) -> str:
    config = run.record["config"]
    generator = (config.get("generator") or {}).get("name") or "model"
    return f"{config['model']['name']}+{generator} ({run.record['run_id'][-10:]}, seed {config['seed']})"
