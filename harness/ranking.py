"""From model scores to the ranked top-50 lists every ranking metric reads (PROTOCOL.md §3.1).

The lists are built once per setting, on the model's device, in one batched stable sort: ties are
broken by ascending item index, i.e. ascending item id. Metrics then work on small integer arrays
(contexts x 50), so re-scoring a stored run needs nothing but the lists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .data import RecSample

if TYPE_CHECKING:
    import torch

LIST_LENGTH = 50


@dataclass
class RankedLists:
    """Top-50 lists of the distinct contexts of one setting and the samples that point into them."""

    setting: str
    top: np.ndarray  # [n_contexts, 50] item indices, best first
    sample_context: np.ndarray  # [n_samples] row of `top` for each sample
    labels: np.ndarray  # [n_samples] label item index
    sample_ids: list[str] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_contexts(self) -> int:
        return int(self.top.shape[0])

    def ranks(self) -> np.ndarray:
        """1-based rank of each sample's label in its list; 0 when absent from the top 50."""
        if self.n_samples == 0:
            return np.zeros(0, dtype=np.int64)
        rows = self.top[self.sample_context]
        hits = rows == self.labels[:, None]
        found = hits.any(axis=1)
        return np.where(found, hits.argmax(axis=1) + 1, 0).astype(np.int64)

    @classmethod
    def from_sample_lists(cls, setting: str, sample_ids: Sequence[str], context_keys: Sequence[Any],
                          labels: Sequence[int], lists: Sequence[Sequence[int]]) -> "RankedLists":
        """Rebuild from stored per-sample rows (samples sharing a context key share one list)."""
        rows: dict[Any, int] = {}
        top: list[Sequence[int]] = []
        sample_context = []
        for key, items in zip(context_keys, lists):
            if key not in rows:
                rows[key] = len(top)
                top.append(items)
            sample_context.append(rows[key])
        width = LIST_LENGTH if not top else len(top[0])
        return cls(
            setting=setting,
            top=np.asarray(top, dtype=np.int64).reshape(len(top), width),
            sample_context=np.asarray(sample_context, dtype=np.int64),
            labels=np.asarray(labels, dtype=np.int64),
            sample_ids=list(sample_ids),
        )


@dataclass
class MetricContext:
    """Dataset facts the long-tail metrics need; all from the training split (PROTOCOL.md §4)."""

    num_items: int
    popularity: np.ndarray  # [num_items] training-dialogue counts
    tiers: np.ndarray  # [num_items] "head" / "body" / "tail"
    item_neighbours: list[set[int]] | None = None  # KG 1-hop features for ILD (None: no KG)


def context_representatives(samples: Sequence[RecSample]) -> tuple[list[RecSample], np.ndarray]:
    """One sample per distinct context (first occurrence) and each sample's row among them."""
    rows: dict[int, int] = {}
    representatives: list[RecSample] = []
    sample_context = np.empty(len(samples), dtype=np.int64)
    for position, sample in enumerate(samples):
        row = rows.get(sample.context_id)
        if row is None:
            row = rows[sample.context_id] = len(representatives)
            representatives.append(sample)
        sample_context[position] = row
    return representatives, sample_context


def context_item_mask(contexts: Sequence[RecSample], shape: tuple[int, int], device) -> "torch.Tensor":
    """`novel` setting: True where an item belongs to the context's M(c), which leaves the candidates."""
    import torch

    rows = [row for row, sample in enumerate(contexts) for _ in sample.context_items]
    cols = [item for sample in contexts for item in sample.context_items]
    mask = torch.zeros(shape, dtype=torch.bool, device=device)
    if rows:
        mask[torch.tensor(rows, device=device), torch.tensor(cols, device=device)] = True
    return mask


def top_items(scores: "torch.Tensor", k: int = LIST_LENGTH, excluded: "torch.Tensor | None" = None,
              checks: "list[tuple[str, torch.Tensor]] | None" = None) -> "torch.Tensor":
    """Batched top-k with ties broken by ascending item index, on the scores' device.

    `excluded` items are removed from the candidates: they come after every candidate, even one
    scored -inf (a repeat-context list in `novel` is the id-ordered catalogue minus M(c)).

    NaN scores and rows with fewer than k candidates are errors. Checking them here reads a value back
    from the device; a caller ranking many batches passes a list as `checks` instead, which collects the
    device-side flags, and calls `raise_on_problems(checks)` once at the end (no per-batch host sync).
    """
    import torch

    if scores.shape[1] < k:  # sorting would silently give shorter lists (load_dataset refuses such catalogues)
        raise ValueError(f"{scores.shape[1]} items cannot fill a top-{k} list")
    found = [("model returned NaN scores", torch.isnan(scores).any())]
    if excluded is not None:
        found.append((f"fewer than {k} candidates left after excluding context items",
                      (~excluded).sum(dim=1).min() < k))
    if checks is None:
        raise_on_problems(found)
    else:
        checks.extend(found)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    if excluded is not None:
        # stable re-sort on the exclusion flag keeps the score order within candidates
        moved = torch.sort(excluded.gather(1, order).to(torch.uint8), dim=1, stable=True).indices
        order = order.gather(1, moved)
    return order[:, :k]


def raise_on_problems(checks: "list[tuple[str, torch.Tensor]]") -> None:
    """Raise ValueError with the first message whose device-side flag is set (one host read for all)."""
    if not checks:
        return
    import torch

    flags = torch.stack([flag.reshape(()) for _, flag in checks]).cpu().tolist()
    for (message, _), flag in zip(checks, flags):
        if flag:
            raise ValueError(message)
