"""Conversation metrics of PROTOCOL.md §5 on clean prediction/reference strings (§5.1).

Four families, so that a definition change bumps only its own version:

* ``bleu_legacy``: per-response NLTK ``sentence_bleu`` with one-hot weights on "System: "-prefixed
  strings, averaged (§5.2). Reimplemented with integer n-gram counts (one pass for all orders);
  the tests check it against ``nltk.translate.bleu_score.sentence_bleu``.
* ``sacrebleu``: corpus BLEU with sacrebleu's defaults plus its signature string (§5.3).
* ``rouge``: rouge-score F-measure of rouge2 / rougeL, target = reference (§5.4).
* ``distinct``: Distinct-n, legacy (÷ responses, prefixed) and ratio (÷ n-grams, clean) (§5.5).

Every tokenizer here is a regex or whitespace split: nothing is downloaded. Library imports happen
inside methods, so importing this module stays cheap.
"""
from __future__ import annotations

import math
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from harness.api import HIGHER, INFO, MetricSpec, hookimpl
from harness.significance import SumTerm, Term, UnionTerm, evaluate_terms, mean_term

if TYPE_CHECKING:
    from scipy import sparse

LEGACY_PREFIX = "System: "
ORDERS = (1, 2, 3, 4)


def legacy(text: str) -> str:
    """The UniCRS/DCRS/MSCRS string form: "System: " + clean text (§5.1)."""
    return LEGACY_PREFIX + text


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """Word n-grams with multiplicity, in order."""
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    for position, text in enumerate([*predictions, *references]):
        if not isinstance(text, str):
            side = "prediction" if position < len(predictions) else "reference"
            index = position if position < len(predictions) else position - len(predictions)
            raise ValueError(f"{side} #{index} is {type(text).__name__}, not str")


def _observed(terms: Sequence[Term], n_responses: int) -> dict[str, Any]:
    """Metric values = the bootstrap terms evaluated on all responses once (None when undefined)."""
    observed = evaluate_terms(terms, {"responses": np.ones((1, n_responses))})
    return {key: (float(value[0]) if np.isfinite(value[0]) else None) for key, value in observed.items()}


# --- legacy BLEU -----------------------------------------------------------------------------


def sentence_bleu_legacy(hypothesis: Sequence[str], reference: Sequence[str], orders=ORDERS) -> list[float]:
    """NLTK ``sentence_bleu([reference], hypothesis, weights=one-hot(n))`` for each n of `orders`.

    Default smoothing (method0: a zero precision becomes the smallest positive float), one
    reference, no auto-reweigh; 0 when no hypothesis unigram occurs in the reference.
    """
    hyp_len, ref_len = len(hypothesis), len(reference)
    if hyp_len > ref_len:
        penalty = 1.0
    elif hyp_len == 0:
        penalty = 0.0
    else:
        penalty = math.exp(1 - ref_len / hyp_len)
    matches: dict[int, tuple[int, int]] = {}
    for n in sorted(set(orders) | {1}):
        hyp_counts, ref_counts = Counter(ngrams(hypothesis, n)), Counter(ngrams(reference, n))
        clipped = sum(min(count, ref_counts[gram]) for gram, count in hyp_counts.items())
        matches[n] = (clipped, max(1, sum(hyp_counts.values())))
    if matches[1][0] == 0:
        return [0.0 for _ in orders]
    scores = []
    for n in orders:
        clipped, total = matches[n]
        precision = clipped / total if clipped else sys.float_info.min
        scores.append(penalty * math.exp(math.log(precision)))
    return scores


class LegacyBleu:
    """bleu{n}_legacy: mean over responses of sentence-level BLEU-n on "System: " strings."""

    def __init__(self, orders=ORDERS):
        self.orders = tuple(orders)

    def per_response(self, predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
        """[responses, orders] sentence-level BLEU-n of each response."""
        _check_pairs(predictions, references)
        rows = [sentence_bleu_legacy(legacy(p).split(), legacy(r).split(), self.orders)
                for p, r in zip(predictions, references)]
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(self.orders))

    def bootstrap_terms_text(self, predictions: Sequence[str], references: Sequence[str]) -> list[Term]:
        scores = self.per_response(predictions, references)
        return [mean_term(f"bleu{n}_legacy", "responses", scores[:, column]) for column, n in enumerate(self.orders)]

    def compute_text(self, predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
        return _observed(self.bootstrap_terms_text(predictions, references), len(predictions))


# --- sacrebleu -------------------------------------------------------------------------------


class SacreBleu:
    """Corpus BLEU (sacrebleu defaults: 13a, mixed case, exp smoothing) with its signature."""

    def _metric(self):
        from sacrebleu.metrics import BLEU

        return BLEU()

    def compute_text(self, predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
        _check_pairs(predictions, references)
        bleu = self._metric()
        if not predictions:  # n/a; the signature is still recorded (it needs one scored corpus)
            bleu.corpus_score(["-"], [["-"]])
            return {"sacrebleu": None, "sacrebleu_signature": str(bleu.get_signature())}
        score = bleu.corpus_score(list(predictions), [list(references)])
        return {"sacrebleu": float(score.score), "sacrebleu_signature": str(bleu.get_signature())}

    def bootstrap_terms_text(self, predictions: Sequence[str], references: Sequence[str]) -> list[Term]:
        """Per-response sufficient statistics; corpus BLEU of a resample is BLEU of their sums.

        Uses the statistics routines sacrebleu itself uses for its own bootstrap (private API,
        checked against ``corpus_score`` by the tests).
        """
        _check_pairs(predictions, references)
        bleu = self._metric()
        stats = np.asarray(bleu._extract_corpus_statistics(list(predictions), [list(references)]), dtype=np.float64)
        stats = stats.reshape(len(predictions), 2 + 2 * bleu.max_ngram_order)

        def reduce(sums: np.ndarray) -> np.ndarray:
            return np.array([bleu._compute_score_from_stats([int(round(v)) for v in row]).score for row in sums])

        return [SumTerm("sacrebleu", "responses", stats, reduce)]


# --- ROUGE -----------------------------------------------------------------------------------


class Rouge:
    """rouge2 / rougeL F-measure (rouge-score, no stemmer), averaged over responses."""

    def per_response(self, predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
        from rouge_score.rouge_scorer import RougeScorer

        _check_pairs(predictions, references)
        scorer = RougeScorer(["rouge2", "rougeL"], use_stemmer=False)
        rows = []
        for prediction, reference in zip(predictions, references):
            scores = scorer.score(reference, prediction)  # target first (§5.4)
            rows.append((scores["rouge2"].fmeasure, scores["rougeL"].fmeasure))
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), 2)

    def bootstrap_terms_text(self, predictions: Sequence[str], references: Sequence[str]) -> list[Term]:
        scores = self.per_response(predictions, references)
        return [mean_term("rouge2", "responses", scores[:, 0]), mean_term("rougeL", "responses", scores[:, 1])]

    def compute_text(self, predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
        return _observed(self.bootstrap_terms_text(predictions, references), len(predictions))


# --- Distinct --------------------------------------------------------------------------------


def ngram_incidence(token_lists: Sequence[Sequence[str]], n: int) -> tuple["sparse.csr_matrix", np.ndarray]:
    """[responses x distinct n-grams] binary incidence, and each response's n-gram count."""
    from scipy import sparse

    vocabulary: dict[tuple[str, ...], int] = {}
    indptr, indices, totals = [0], [], []
    for tokens in token_lists:
        grams = ngrams(tokens, n)
        totals.append(len(grams))
        indices.extend(sorted({vocabulary.setdefault(gram, len(vocabulary)) for gram in grams}))
        indptr.append(len(indices))
    matrix = sparse.csr_matrix((np.ones(len(indices)), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
                               shape=(len(token_lists), max(1, len(vocabulary))))
    return matrix, np.asarray(totals, dtype=np.float64)


class Distinct:
    """dist{n}_legacy = |⋃ n-grams of prefixed predictions| / J; dist{n}_ratio = distinct / total."""

    def __init__(self, orders=ORDERS):
        self.orders = tuple(orders)

    def bootstrap_terms_text(self, predictions: Sequence[str], references: Sequence[str]) -> list[Term]:
        _check_pairs(predictions, references)
        legacy_tokens = [legacy(p).split() for p in predictions]
        clean_tokens = [p.split() for p in predictions]
        terms: list[Term] = []
        for n in self.orders:
            incidence, _ = ngram_incidence(legacy_tokens, n)
            terms.append(UnionTerm(f"dist{n}_legacy", "responses", incidence, np.ones(len(predictions))))
        for n in self.orders:
            incidence, totals = ngram_incidence(clean_tokens, n)
            terms.append(UnionTerm(f"dist{n}_ratio", "responses", incidence, totals))
        return terms

    def compute_text(self, predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
        return _observed(self.bootstrap_terms_text(predictions, references), len(predictions))


@hookimpl
def crs_bench_register_metrics(registry) -> None:
    # registration order is the leaderboard's column order: BLEU, ROUGE, Distinct, then sacrebleu
    registry.add("bleu_legacy", LegacyBleu, "Sentence BLEU-n (NLTK semantics) on 'System: ' strings, averaged.",
                 version="1", spec=MetricSpec("conv", {"bleu*_legacy": HIGHER},
                                              columns=("bleu2_legacy", "bleu3_legacy"),
                                              significance=("bleu*_legacy",)))
    registry.add("rouge", Rouge, "ROUGE-2 and ROUGE-L F-measure (rouge-score, no stemmer), averaged.", version="1",
                 spec=MetricSpec("conv", {"rouge2": HIGHER, "rougeL": HIGHER}, columns=("rouge2", "rougeL"),
                                 significance=("rouge2", "rougeL")))
    registry.add("distinct", Distinct, "Distinct-n: legacy (per response, prefixed) and ratio (distinct/total).",
                 version="1", spec=MetricSpec("conv", {"dist*_legacy": HIGHER, "dist*_ratio": HIGHER},
                                              columns=("dist2_legacy", "dist3_legacy", "dist4_legacy",
                                                       "dist2_ratio", "dist3_ratio", "dist4_ratio")))
    registry.add("sacrebleu", SacreBleu, "Corpus BLEU with sacrebleu defaults, plus its signature.", version="1",
                 spec=MetricSpec("conv", {"sacrebleu": HIGHER, "sacrebleu_signature": INFO}, columns=("sacrebleu",)))
