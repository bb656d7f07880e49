"""The `bm25` retriever: Okapi BM25 from the `bm25s` library (Lucene variant, k1 = 1.5, b = 0.75).

Why bm25s: it scores a whole query batch in one `retrieve` call over a sparse matrix (no per-document Python),
and it is a maintained library (the issue asks for no hand-written BM25). Texts are lower-cased and split
into word tokens (English stop words removed) by `bm25s.tokenize`; DCRS writes entity names into the
indexed text, so names count as words. Exclusion (a training query's own conversation) is applied after
the call: the library returns ``k + max |exclude[q]|`` candidates per query, excluded ids are masked and the
best k remaining kept, which is exact because at most |exclude[q]| of the candidates can be excluded.
Equal scores are ordered by ascending document id (as `plugins.retrievers.top_k`).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from harness.api import RunContext
from plugins.retrievers import check_exclude, top_k


class BM25Retriever:
    """`harness.api.Retriever` over a `bm25s.BM25` index."""

    def __init__(self, k1: float = 1.5, b: float = 0.75, stopwords: str | None = "en", threads: int = 1):
        if k1 < 0 or not 0.0 <= b <= 1.0:
            raise ValueError(f"bm25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1, self.b, self.stopwords, self.threads = k1, b, stopwords, threads
        self.model: Any = None
        self.size = 0

    def _tokens(self, texts: Sequence[str], ids: bool) -> Any:
        import bm25s

        return bm25s.tokenize(list(texts), stopwords=self.stopwords, return_ids=ids, show_progress=False)

    def index(self, corpus: Sequence[str]) -> None:
        import bm25s

        self.size = len(corpus)
        self.model = bm25s.BM25(k1=self.k1, b=self.b)
        if self.size:
            self.model.index(self._tokens(corpus, ids=True), show_progress=False)

    def search(self, queries: Sequence[str], k: int,
               exclude: Sequence[Sequence[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """([Q, k] ids, [Q, k] BM25 scores), best first; one `retrieve` call for the whole batch."""
        if self.model is None:
            raise RuntimeError("BM25Retriever.search called before index()")
        check_exclude(queries, exclude)
        extra = max((len(r) for r in exclude), default=0) if exclude is not None else 0
        width = min(self.size, k + extra)
        if not len(queries) or width == 0:
            return top_k(np.zeros((len(queries), 0), dtype=np.float32), k)
        tokens = self._tokens(queries, ids=False)
        tokens = [t if t else [""] for t in tokens]  # an empty query scores 0 everywhere
        ids, scores = self.model.retrieve(tokens, k=width, show_progress=False, n_threads=self.threads)
        ids, scores = np.asarray(ids, dtype=np.int64), np.asarray(scores, dtype=np.float32).copy()
        if exclude is not None and extra:  # mask excluded candidates: [Q, width, extra] comparisons
            banned = np.full((len(queries), extra), -2, dtype=np.int64)
            for row, excluded in enumerate(exclude):  # building the small [Q, extra] table, not scoring
                banned[row, :len(excluded)] = excluded
            scores[(ids[:, :, None] == banned[:, None, :]).any(-1)] = -np.inf
        order = _order(ids, scores)  # best score first, ties by ascending document id
        ids, scores = np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        take = min(k, width)
        valid = np.isfinite(scores[:, :take])
        out_ids[:, :take] = np.where(valid, ids[:, :take], -1)
        out_scores[:, :take] = np.where(valid, scores[:, :take], -np.inf)
        return out_ids, out_scores

    def describe(self) -> dict[str, Any]:
        import bm25s

        return {"kind": "bm25", "library": f"bm25s {bm25s.__version__}", "variant": "lucene", "k1": self.k1,
                "b": self.b, "stopwords": self.stopwords, "tokens": "bm25s.tokenize (lower-cased words)",
                "corpus": self.size}


def _order(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per row: descending score, then ascending id (a stable sort on ids, then a stable sort on -score)."""
    by_id = np.argsort(ids, axis=1, kind="stable")
    by_score = np.argsort(-np.take_along_axis(scores, by_id, 1), axis=1, kind="stable")
    return np.take_along_axis(by_id, by_score, 1)


def bm25_retriever(ctx: RunContext, k1: float = 1.5, b: float = 0.75, stopwords: str | None = "en",
                   threads: int = 1) -> BM25Retriever:
    """The `bm25` retriever (`threads`: bm25s retrieval threads; 0 = all cores)."""
    return BM25Retriever(k1, b, stopwords, threads)
