"""Built-in retrievers (kind ``retrievers``): ``dense`` (cosine over frozen sentence-encoder vectors), ``bm25``
(`plugins.retrieval_bm25`), ``simcse`` (`plugins.retrieval_simcse`) and ``random`` (the seeded control).

Why the text encoder's own cache: encoding dominates the cost on CPU, and `TextEncoder.encode` already keys
its disk cache by the SHA-256 of each text, so a corpus indexed once (the training contexts, which bert-rec
and hybrid encode as well) costs nothing in later runs.

Search is exact: one matrix product of the query block with the whole corpus, excluded ids set to -inf,
then a vectorised top-k (`top_k`). Equal scores come out in ascending document id, so results never depend
on the order a partial sort happens to visit them.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

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
    Exact without a full sort: `torch.topk` (zero-copy over the numpy block) takes k + 1 candidates per row;
    where the k-th and (k + 1)-th are equal (a tie across the boundary, whose members topk picks in no defined
    order) the row is redone by `_exact_rows`; the k kept are then ordered by score, ties by ascending id.
    """
    import torch

    rows, n = scores.shape
    out_ids = np.full((rows, k), -1, dtype=np.int64)
    out_scores = np.full((rows, k), -np.inf, dtype=np.float32)
    take = min(k, n)
    if rows == 0 or take == 0:
        return out_ids, out_scores
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    values, ids = torch.topk(torch.from_numpy(scores), min(take + 1, n), dim=1)
    values, ids = values.numpy(), ids.numpy()
    if take < n:
        crowded = np.flatnonzero(values[:, take - 1] == values[:, take])
        ids = ids[:, :take].copy()
        if len(crowded):
            ids[crowded] = _exact_rows(scores[crowded], take)
    ids = np.sort(ids, axis=1)  # ascending id, then a stable sort by score keeps equal scores in that order
    picked = np.take_along_axis(scores, ids, axis=1)
    order = np.argsort(-picked, axis=1, kind="stable")
    ids, picked = np.take_along_axis(ids, order, axis=1), np.take_along_axis(picked, order, axis=1)
    valid = np.isfinite(picked)
    out_ids[:, :take] = np.where(valid, ids, -1)
    out_scores[:, :take] = np.where(valid, picked, -np.inf)
    return out_ids, out_scores


def _exact_rows(scores: np.ndarray, take: int) -> np.ndarray:
    """[R, take] ids of rows with a tie at the k-th value: every score above it, then the lowest ids of
    the scores equal to it (a partition finds it; no full sort)."""
    n = scores.shape[1]
    kth = np.partition(scores, n - take, axis=1)[:, n - take][:, None]
    above, tied = scores > kth, scores == kth
    need = take - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= need))
    return np.nonzero(chosen)[1].reshape(len(scores), take)


def check_exclude(queries: Sequence[Any], exclude: Sequence[Sequence[int]] | None) -> None:
    if exclude is not None and len(exclude) != len(queries):
        raise ValueError(f"exclude has {len(exclude)} rows for {len(queries)} queries")


def mask_excluded(scores: np.ndarray, rows: Sequence[Sequence[int]]) -> None:
    """Set ``scores[q, rows[q]]`` to -inf in place, with one fancy-index assignment."""
    lengths = [len(r) for r in rows]
    if sum(lengths):
        flat = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows if len(r)])
        scores[np.repeat(np.arange(len(rows)), lengths), flat] = -np.inf


def blocked_top_k(score_block: Callable[[int, int], np.ndarray], queries: int, corpus: int, k: int,
                  exclude: Sequence[Sequence[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`top_k` over the [Q, N] scores that ``score_block(start, stop)`` returns (a fresh array) for query rows
    start..stop, taken in blocks of at most `QUERY_BLOCK_CELLS` scores, with ``exclude[q]`` masked first."""
    if corpus == 0 or queries == 0:
        return top_k(np.zeros((queries, 0), dtype=np.float32), k)
    block = max(1, QUERY_BLOCK_CELLS // corpus)
    ids, scores = [], []
    for start in range(0, queries, block):
        stop = min(queries, start + block)
        part = np.asarray(score_block(start, stop), dtype=np.float32)  # a fresh array: masked in place
        if exclude is not None:
            mask_excluded(part, exclude[start:stop])
        found = top_k(part, k)
        ids.append(found[0])
        scores.append(found[1])
    return np.concatenate(ids), np.concatenate(scores)


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
        check_exclude(queries, exclude)
        if not len(queries):
            return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
        return self.search_vectors(self.encoder.encode(list(queries)), k, exclude)

    def search_vectors(self, queries: np.ndarray, k: int,
                       exclude: Sequence[Sequence[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`search` for already encoded queries [Q, d]."""
        assert self.vectors is not None
        queries = _unit_rows(queries)
        return blocked_top_k(lambda start, stop: queries[start:stop] @ self.vectors.T,  # [q, N]: all at once
                             len(queries), self.vectors.shape[0], k, exclude)

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


class RandomRetriever:
    """Uniform random documents (`harness.api.Retriever`): the control DCRS's released recommendation
    loaders actually use (SYSTEMS.md §8). A random score matrix takes the place of the similarities, so
    exclusion, blocking and tie rules are exactly the dense retriever's; block b of a search draws from
    ``default_rng([seed, b])``, so the same queries in the same order always get the same documents."""

    def __init__(self, seed: int = 0):
        self.seed, self.size = int(seed), None

    def index(self, corpus: Sequence[str]) -> None:
        self.size = len(corpus)

    def search(self, queries: Sequence[str], k: int,
               exclude: Sequence[Sequence[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        if self.size is None:
            raise RuntimeError("RandomRetriever.search called before index()")
        check_exclude(queries, exclude)
        n = self.size

        def draw(start: int, stop: int) -> np.ndarray:
            return np.random.default_rng([self.seed, start]).random((stop - start, n), dtype=np.float32)

        return blocked_top_k(draw, len(queries), n, k, exclude)

    def describe(self) -> dict[str, Any]:
        return {"kind": "random", "seed": self.seed, "draw": "uniform scores from numpy default_rng([seed, "
                "first query of the block]); top-k of them", "corpus": self.size}


def random_retriever(ctx: RunContext, seed: int | None = None) -> RandomRetriever:
    """The `random` retriever, seeded by `seed` (default: the run seed)."""
    return RandomRetriever(ctx.seed if seed is None else seed)


@hookimpl
def crs_bench_register_retrievers(registry) -> None:
    registry.add("dense", dense_retriever,
                 "Exact cosine search over cached sentence-encoder vectors (default all-MiniLM-L6-v2).")
    registry.add("bm25", "plugins.retrieval_bm25:bm25_retriever",
                 "BM25 (bm25s, Lucene variant) over lower-cased word tokens; one library call per batch.")
    registry.add("simcse", "plugins.retrieval_simcse:simcse_retriever",
                 "Dense search with the sentence encoder fine-tuned by unsupervised SimCSE on the indexed corpus "
                 "(bounded steps, cached by corpus and settings).")
    registry.add("random", random_retriever, "Seeded uniform random documents: the control of demonstration retrieval.")
