"""LumiCRS popularity segmentation, exemplar dialogues and support sets (SYSTEMS.md §10.1-10.3).

The paper calls the exemplar dialogue a "prototype"; here that word is kept for the model's learned class
prototypes (`plugins.lumicrs.model`), which are vectors, not dialogues. For every body or tail movie m with at
least one training dialogue (D_m = the dialogues mentioning m):

* exemplar x_m: ``rule="centroid"`` (the released code, SYSTEMS.md §10.2) takes the member of D_m nearest to
  the mean sentence embedding of D_m; ``rule="composite"`` takes the member with the highest mean FinalScore
  to the other members of D_m (a singleton's exemplar is its only dialogue under both rules);
* support set S_m: the top-K_s training dialogues other than x_m by FinalScore(x_m, ·) over the whole corpus.

FinalScore = w_sem·Sim_sem + w_emo·Sim_emo + w_mov·Sim_mov + w_int·R with Sim_sem the cosine of MiniLM dialogue
embeddings, Sim_emo = 1 / (1 + L1 distance of VADER vectors), Sim_mov = shared movies (or Jaccard with
`normalize_mov`), R = Sim_sem·Sim_emo·σ(α_int·Sim_mov). Everything is computed as chunked matrix products;
ties break towards the lower dialogue index, so the selection is deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness.data import Dialogue
from harness.popularity import ItemStatistics

SEGMENTED_TIERS = ("body", "tail")
RULES = ("centroid", "composite")


@dataclass(frozen=True)
class CompositeWeights:
    """(w_sem, w_emo, w_mov, w_int) summing to 1 and α_int; released values (0.4, 0.2, 0.2, 0.2), 1."""

    sem: float = 0.4
    emo: float = 0.2
    mov: float = 0.2
    interaction: float = 0.2
    alpha_int: float = 1.0
    normalize_mov: bool = False

    def __post_init__(self) -> None:
        total = self.sem + self.emo + self.mov + self.interaction
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"composite weights must sum to 1, got {total:g}")


def incidence(dialogues: Sequence[Dialogue], num_items: int):
    """Sparse [n_dialogues, num_items] 0/1 matrix: dialogue d mentions item i."""
    from scipy import sparse

    rows, cols = [], []
    for d, dialogue in enumerate(dialogues):
        items = sorted({item for turn in dialogue.turns for item in turn.items})
        rows.extend([d] * len(items))
        cols.extend(items)
    data = np.ones(len(rows), dtype=np.float64)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(dialogues), num_items))


def composite_scores(rows: np.ndarray, embeddings: np.ndarray, emotions: np.ndarray, movies: Any,
                     weights: CompositeWeights) -> np.ndarray:
    """FinalScore(x_r, x) for the query dialogues `rows` against every dialogue: [len(rows), n_dialogues].

    `embeddings` are L2-normalised; `movies` is the sparse incidence matrix of `incidence`.
    """
    rows = np.asarray(rows, dtype=np.int64)
    sem = embeddings[rows] @ embeddings.T
    l1 = np.abs(emotions[rows][:, None, :] - emotions[None, :, :]).sum(-1)
    emo = 1.0 / (1.0 + l1)
    shared = np.asarray((movies[rows] @ movies.T).todense(), dtype=np.float64)
    if weights.normalize_mov:
        sizes = np.asarray(movies.sum(axis=1), dtype=np.float64).ravel()
        union = sizes[rows][:, None] + sizes[None, :] - shared
        mov = np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)
    else:
        mov = shared
    interaction = sem * emo / (1.0 + np.exp(-weights.alpha_int * mov))
    return weights.sem * sem + weights.emo * emo + weights.mov * mov + weights.interaction * interaction


def segment(stats: ItemStatistics) -> dict[str, np.ndarray]:
    """Body and tail items that have at least one training dialogue (cold items have no D_m)."""
    tiers = np.asarray(stats.tiers)
    popular = np.asarray(stats.popularity) >= 1
    return {tier: np.flatnonzero((tiers == tier) & popular) for tier in SEGMENTED_TIERS}


@dataclass
class ExemplarSet:
    """Per target item (ascending index): tier, exemplar dialogue and support dialogues (-1 pads)."""

    items: np.ndarray
    tiers: list[str]
    exemplar: np.ndarray
    support: np.ndarray  # [n_items, K_s] dialogue indices, best first
    support_scores: np.ndarray
    rule: str
    weights: CompositeWeights
    _position: dict[int, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._position = {int(item): p for p, item in enumerate(self.items)}

    def __contains__(self, item: int) -> bool:
        return int(item) in self._position

    def exemplar_of(self, item: int) -> int:
        return int(self.exemplar[self._position[int(item)]])

    def support_of(self, item: int) -> list[int]:
        return [int(d) for d in self.support[self._position[int(item)]] if d >= 0]

    def tier_of(self, item: int) -> str:
        return self.tiers[self._position[int(item)]]

    def summary(self) -> dict[str, Any]:
        return {"rule": self.rule, "items": {t: self.tiers.count(t) for t in SEGMENTED_TIERS},
                "support_size": int(self.support.shape[1]),
                "weights": [self.weights.sem, self.weights.emo, self.weights.mov, self.weights.interaction],
                "alpha_int": self.weights.alpha_int, "normalize_mov": self.weights.normalize_mov}


def select_exemplars(dialogues: Sequence[Dialogue], stats: ItemStatistics, embeddings: np.ndarray,
                     emotions: np.ndarray, weights: CompositeWeights | None = None, support_size: int = 3,
                     rule: str = "centroid", chunk: int = 256) -> ExemplarSet:
    """Exemplar dialogues and support sets of every body/tail item with a training dialogue."""
    if rule not in RULES:
        raise ValueError(f"exemplar rule must be one of {RULES}, got {rule!r}")
    weights = weights or CompositeWeights()
    embeddings = np.asarray(embeddings, dtype=np.float64)
    emotions = np.asarray(emotions, dtype=np.float64)
    tiers_of = segment(stats)
    targets = np.sort(np.concatenate([tiers_of[t] for t in SEGMENTED_TIERS])).astype(np.int64)
    tier_array = np.asarray(stats.tiers)
    movies = incidence(dialogues, len(stats.popularity))
    members = movies[:, targets].tocsc()  # [n_dialogues, n_targets]
    sizes = np.asarray(members.sum(axis=0), dtype=np.float64).ravel()
    n = len(dialogues)

    if rule == "centroid":
        centroids = np.asarray((members.T @ embeddings)) / np.maximum(sizes, 1.0)[:, None]
        norms = np.linalg.norm(centroids, axis=1)
        centroids = centroids / np.where(norms > 0, norms, 1.0)[:, None]
    best_value = np.full(len(targets), -np.inf)
    best_index = np.full(len(targets), -1, dtype=np.int64)
    dense_members = members.toarray().astype(bool)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        if rule == "centroid":
            score = embeddings[rows] @ centroids.T
        else:
            final = composite_scores(rows, embeddings, emotions, movies, weights)
            total = np.asarray(final @ dense_members.astype(np.float64))
            own = final[np.arange(len(rows)), rows][:, None] * dense_members[rows]
            score = np.where(sizes > 1, (total - own) / np.maximum(sizes - 1.0, 1.0), 0.0)
        score = np.where(dense_members[rows], score, -np.inf)
        chunk_best = score.argmax(axis=0)  # first maximum: the lowest dialogue index in the chunk
        values = score[chunk_best, np.arange(len(targets))]
        better = values > best_value  # strict: an earlier chunk keeps ties
        best_value[better], best_index[better] = values[better], rows[chunk_best[better]]

    k = min(support_size, max(0, n - 1))
    support = np.full((len(targets), support_size), -1, dtype=np.int64)
    support_scores = np.full((len(targets), support_size), np.nan)
    for start in range(0, len(targets), chunk):
        part = np.arange(start, min(len(targets), start + chunk))
        final = composite_scores(best_index[part], embeddings, emotions, movies, weights)
        final[np.arange(len(part)), best_index[part]] = -np.inf  # S_m excludes the exemplar itself
        order = np.argsort(-final, axis=1, kind="stable")[:, :k]
        support[part, :k] = order
        support_scores[part, :k] = np.take_along_axis(final, order, axis=1)
    return ExemplarSet(targets, [str(tier_array[i]) for i in targets], best_index, support, support_scores,
                       rule, weights)


def dialogue_text(dialogue: Dialogue) -> str:
    return "\n".join(f"{turn.role}: {turn.text}" for turn in dialogue.turns)


def embed_texts(texts: Sequence[str], encoder: str, cache_dir: Path | None, device: str = "cpu",
                max_tokens: int = 256) -> np.ndarray:
    """`encoder="hashing"`: hashed bag of words (256-d, no model; tests and smoke runs); else a text encoder."""
    if encoder == "hashing":
        return hashed_bow(texts)
    from plugins.models.text_encoder import TextEncoder

    if not texts:
        return np.zeros((0, 1), dtype=np.float32)
    return TextEncoder(encoder, max_tokens, device, cache_dir).encode(list(texts))


def hashed_bow(texts: Sequence[str], dim: int = 256) -> np.ndarray:
    """L2-normalised counts of crc32-hashed lower-case words (process-independent)."""
    import re
    import zlib

    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):  # featurisation, once per dialogue
        for word in re.findall(r"[a-z0-9']+", text.lower()):
            out[row, zlib.crc32(word.encode()) % dim] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)
