"""Built-in retrievers (kind ``retrievers``): ``dense``, cosine similarity over frozen sentence-encoder vectors.

Why the text encoder's own cache: encoding dominates the cost on CPU, and `TextEncoder.encode` already keys
its disk cache by the SHA-256 of each text, so a corpus indexed once (the training contexts, which bert-rec
and hybrid encode as well) costs nothing in later runs.

Search is exact: one matrix product of the query block with the whole corpus, excluded ids set to -inf,
then a vectorised top-k (`top_k`). Equal scores come out in ascending document id, so results never depend
on the order a partial sort happens to visit them.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

from harness.api import RunContext, hookimpl

QUERY_BLOCK_CELLS = 1 << 24  # query rows per matrix product: at most ~16M scores (64 MB) held at once


class Encoder(Protocol):
    """What the retriever needs from an encoder: [n, d] vectors for n texts, in one call."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """([Q, k] ids, [Q, k] scores) of the k highest scores per row, best first, ties by ascending id.

    -inf scores are never returned: those slots (and any beyond the row's length) get id -1, score -inf.
    Exact without a full sort: a partition finds each row's k-th value, every score above it is kept, and
    of the scores equal to it the lowest ids fill the remaining slots.
    """
    rows, n = scores.shape
    out_ids = np.full((rows, k), -1, dtype=np.int64)
    out_scores = np.full((rows, k), -np.inf, dtype=np.float32)
    take = min(k, n)
    if rows == 0 or take == 0:
        return out_ids, out_scores
    if take < n:
        kth = np.partition(scores, n - take, axis=1)[:, n - take][:, None]  # the take-th largest per row
        above = scores > kth
        tied = scores == kth
        need = take - above.sum(axis=1, keepdims=True)
        chosen = above | (tied & (np.cumsum(tied, axis=1) <= need))
    else:
        chosen = np.ones_like(scores, dtype=bool)
    ids = np.nonzero(chosen)[1].reshape(rows, take)  # exactly `take` per row, in ascending id order
    picked = np.take_along_axis(scores, ids, axis=1)
    order = np.argsort(-picked, axis=1, kind="stable")  # stable: equal scores keep ascending ids
    ids, picked = np.take_along_axis(ids, order, axis=1), np.take_along_axis(picked, order, axis=1)
    valid = np.isfinite(picked)
    out_ids[:, :take] = np.where(valid, ids, -1)
    out_scores[:, :take] = np.where(valid, picked, -np.inf)
    return out_ids, out_scores


class DenseRetriever:
    """Exact cosine nearest neighbours of a fixed corpus (`harness.api.Retriever`)."""

    def __init__(self, encoder: Encoder, details: dict[str, Any] | None = None):
        self.encoder = encoder
        self.details = dict(details or {})
        self.vectors: np.ndarray | None = None  # [N, d] unit rows

    def index(self, corpus: Sequence[str]) -> None:
        """Encode the corpus once (one encoder call); ids are positions in `corpus`."""
        self.vectors = _unit_rows(self.encoder.encode(list(corpus))) if len(corpus) else \
            np.zeros((0, 0), dtype=np.float32)

    def search(self, queries: Sequence[str], k: int,
               exclude: Sequence[Sequence[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """([Q, k] ids, [Q, k] cosines), best first; ``exclude[q]`` never returned for query q. Slots
        without a candidate (k larger than what is left) hold id -1 and score -inf."""
        if self.vectors is None:
            raise RuntimeError("DenseRetriever.search called before index()")
        if exclude is not None and len(exclude) != len(queries):
            raise ValueError(f"exclude has {len(exclude)} rows for {len(queries)} queries")
        if not len(queries):
            return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
        return self.search_vectors(self.encoder.encode(list(queries)), k, exclude)

    def search_vectors(self, queries: np.ndarray, k: int,
                       exclude: Sequence[Sequence[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`search` for already encoded queries [Q, d]."""
        assert self.vectors is not None
        queries = _unit_rows(queries)
        n = self.vectors.shape[0]
        if n == 0:
            return top_k(np.zeros((len(queries), 0), dtype=np.float32), k)
        block = max(1, QUERY_BLOCK_CELLS // n)
        ids, scores = [], []
        for start in range(0, len(queries), block):
            part = queries[start:start + block] @ self.vectors.T  # [q, N]: the whole corpus at once
            if exclude is not None:
                rows = exclude[start:start + block]
                lengths = [len(r) for r in rows]
                if sum(lengths):
                    flat = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows if len(r)])
                    part[np.repeat(np.arange(len(rows)), lengths), flat] = -np.inf
            found = top_k(part, k)
            ids.append(found[0])
            scores.append(found[1])
        return np.concatenate(ids), np.concatenate(scores)

    def describe(self) -> dict[str, Any]:
        return {"kind": "dense", "similarity": "cosine", "search": "exact (matrix product + top-k)",
                "corpus": 0 if self.vectors is None else int(self.vectors.shape[0]), **self.details}


def dense_retriever(ctx: RunContext, encoder: str = "all-MiniLM-L6-v2", max_tokens: int = 256,
                    batch_size: int = 32) -> DenseRetriever:
    """The `dense` retriever: a frozen `TextEncoder` (cached under the run's cache directory)."""
    from plugins.models.text_encoder import TextEncoder

    text = TextEncoder(encoder, max_tokens, ctx.device, ctx.cache_dir, batch_size=batch_size)
    return DenseRetriever(text, {"encoder": encoder, "max_tokens": max_tokens, "pooling": text.pooling,
                                 "encoder_cache": text.key})


@hookimpl
def crs_bench_register_retrievers(registry) -> None:
    registry.add("dense", dense_retriever,
                 "Exact cosine search over cached sentence-encoder vectors (default all-MiniLM-L6-v2).")
