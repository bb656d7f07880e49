"""Long-tail and beyond-accuracy metrics of PROTOCOL.md §4, in one vectorized numpy pass.

* Tier-Recall@k (head / body / tail / cold, each with its sample count n_<tier>) and PWP@k are
  ratios of per-sample sums (resampling unit: samples).
* Coverage@k is the size of the union of the distinct contexts' top-k lists (unit: contexts).
* ILD@k and ARP@k are per-list values averaged over distinct contexts (unit: contexts).

ILD avoids the k(k-1)/2 pairwise loop: with u_i = f_i / |f_i| the L2-normalised binary KG-neighbour
vector (u_i = 0 for empty features), the sum of pairwise cosines of a list is
(‖Σ_a u_a‖² − #non-empty) / 2, so one sparse product [contexts x items] @ [items x entities] gives
every list's ILD at once. Empty features have cosine 0 with everything, i.e. distance 1, as required.
"""
from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from harness.api import COUNT, HIGHER, LOWER, MetricParam, MetricSpec, hookimpl
from harness.ranking import MetricContext, RankedLists
from harness.significance import Term, UnionTerm, evaluate_terms, mean_term, ratio_term

from .recall import check_lists

if TYPE_CHECKING:
    from scipy import sparse

TIER_NAMES = ("head", "body", "tail", "cold")
DEFAULT_BETA = 0.5


def popularity_percentiles(popularity: np.ndarray) -> np.ndarray:
    """Mid-rank percentile pct(i) = (#{pop < pop(i)} + ½ #{pop = pop(i)}) / |I| (§4.7)."""
    popularity = np.asarray(popularity)
    ordered = np.sort(popularity)
    below = np.searchsorted(ordered, popularity, side="left")
    equal = np.searchsorted(ordered, popularity, side="right") - below
    return (below + 0.5 * equal) / popularity.size


def neighbour_features(neighbours: Sequence[set[int]], num_items: int) -> "sparse.csr_matrix":
    """[items x entities] rows f_i / ‖f_i‖ of the binary KG-neighbour bags (zero rows when empty)."""
    from scipy import sparse

    if len(neighbours) != num_items:
        raise ValueError(f"item_neighbours has {len(neighbours)} entries for {num_items} catalogue items")
    lengths = np.fromiter(map(len, neighbours), dtype=np.int64, count=num_items)
    entities = np.fromiter(itertools.chain.from_iterable(neighbours), dtype=np.int64, count=int(lengths.sum()))
    columns, compact = np.unique(entities, return_inverse=True)
    rows = np.repeat(np.arange(num_items), lengths)
    binary = sparse.csr_matrix((np.ones(entities.size), (rows, compact.ravel())), shape=(num_items, max(1, columns.size)))
    binary.sum_duplicates()
    binary.data[:] = 1.0  # a bag, even if an item lists an entity twice
    degree = np.diff(binary.indptr)
    scale = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1)), 0.0)
    return sparse.csr_matrix(sparse.diags(scale) @ binary)


def empty_feature_count(neighbours: Sequence[set[int]]) -> int:
    """Items with no KG neighbour (ILD distance 1 to everything); the run records this count."""
    return int(sum(1 for bag in neighbours if not bag))


def list_ild(top: np.ndarray, features: "sparse.csr_matrix") -> np.ndarray:
    """ILD of every row of `top` (each row a list of item indices; needs >= 2 columns)."""
    from scipy import sparse

    n_lists, width = top.shape
    membership = sparse.csr_matrix(
        (np.ones(top.size), top.ravel(), np.arange(0, top.size + 1, width)), shape=(n_lists, features.shape[0]))
    summed = membership @ features  # [lists x entities]: Σ_a u_a per list
    row_of_entry = np.repeat(np.arange(n_lists), np.diff(summed.indptr))
    squared_norm = np.bincount(row_of_entry, weights=summed.data ** 2, minlength=n_lists)
    nonempty = np.diff(features.indptr)[top] > 0
    cosine_sum = (squared_norm - nonempty.sum(axis=1)) / 2.0
    return 1.0 - cosine_sum * 2.0 / (width * (width - 1))


class LongTailMetrics:
    """Tier-Recall, PWP, Coverage, ILD and ARP of one setting's lists; `pwp_beta` is PWP's β."""

    def __init__(self, recall_ks=(1, 10, 50), list_ks=(10, 50), tiers=TIER_NAMES, pwp_beta: float = DEFAULT_BETA):
        self.recall_ks, self.list_ks, self.tiers = tuple(recall_ks), tuple(list_ks), tuple(tiers)
        unknown = set(self.tiers) - set(TIER_NAMES)
        if unknown:
            raise ValueError(f"unknown tiers {sorted(unknown)}; known: {', '.join(TIER_NAMES)}")
        self.beta = float(pwp_beta)
        self._features_for: object | None = None  # the item_neighbours list the cache was built from
        self._features: "sparse.csr_matrix | None" = None

    # -- building blocks -----------------------------------------------------------------------

    def features(self, ctx: MetricContext) -> "sparse.csr_matrix | None":
        """Normalised KG-neighbour features, built once per `item_neighbours` object."""
        if ctx.item_neighbours is None:
            return None
        if self._features_for is not ctx.item_neighbours:
            self._features = neighbour_features(ctx.item_neighbours, ctx.num_items)
            self._features_for = ctx.item_neighbours
        return self._features

    def terms(self, lists: RankedLists, ctx: MetricContext) -> tuple[dict[str, int], list[Term]]:
        """Tier sample counts and every metric as a bootstrap term (metric = term on all units)."""
        check_lists(lists, ctx)
        popularity = np.asarray(ctx.popularity)
        tiers = np.asarray(ctx.tiers)
        if popularity.shape != (ctx.num_items,) or tiers.shape != (ctx.num_items,):
            raise ValueError(f"MetricContext: popularity {popularity.shape} and tiers {tiers.shape} "
                             f"must both have one entry per item ({ctx.num_items})")
        beta = self.beta
        ranks = lists.ranks()
        found = ranks > 0
        labels = np.asarray(lists.labels)
        membership = {name: (popularity[labels] == 0 if name == "cold" else tiers[labels] == name) for name in self.tiers}
        counts = {f"n_{name}": int(member.sum()) for name, member in membership.items()}

        terms: list[Term] = []
        for name, member in membership.items():
            for k in self.recall_ks:
                terms.append(ratio_term(f"{name}_recall@{k}", "samples", member & found & (ranks <= k), member))
        weight = (popularity[labels].astype(np.float64) + 1.0) ** (-beta)
        for k in self.list_ks:
            terms.append(ratio_term(f"pwp@{k}", "samples", weight * (found & (ranks <= k)), weight))

        terms.extend(self._list_terms(lists, ctx, popularity))
        return counts, terms

    def _list_terms(self, lists: RankedLists, ctx: MetricContext, popularity: np.ndarray) -> list[Term]:
        from scipy import sparse

        top = np.asarray(lists.top)
        features = self.features(ctx)
        percentiles = popularity_percentiles(popularity)
        terms: list[Term] = []
        for k in self.list_ks:
            head = top[:, :k]  # L_c[:k]; a shorter list is used whole
            width = head.shape[1]
            incidence = sparse.csr_matrix(
                (np.ones(head.size), head.ravel(), np.arange(0, head.size + 1, max(width, 1))),
                shape=(head.shape[0], ctx.num_items))
            terms.append(UnionTerm(f"coverage@{k}", "contexts", incidence, float(ctx.num_items)))
            if features is not None and width >= 2:
                terms.append(mean_term(f"ild@{k}", "contexts", list_ild(head, features)))
            else:  # no KG or a one-item list: ILD is undefined
                terms.append(mean_term(f"ild@{k}", "contexts", np.full(head.shape[0], np.nan)))
            terms.append(mean_term(f"arp@{k}", "contexts",
                                   percentiles[head].mean(axis=1) if width else np.full(head.shape[0], np.nan)))
        return terms

    # -- metric family API ---------------------------------------------------------------------

    def compute(self, lists: RankedLists, ctx: MetricContext) -> dict[str, Any]:
        counts, terms = self.terms(lists, ctx)
        values: dict[str, Any] = dict(counts)
        if lists.n_samples == 0:  # empty S: every metric n/a (PROTOCOL.md §3.3)
            return values | {term.key: None for term in terms}
        observed = evaluate_terms(terms, {"samples": np.ones((1, lists.n_samples)),
                                          "contexts": np.ones((1, lists.n_contexts))})
        for term in terms:
            value = float(observed[term.key][0])
            values[term.key] = value if np.isfinite(value) else None
        return values

    def bootstrap_terms(self, lists: RankedLists, ctx: MetricContext) -> list[Term]:
        return self.terms(lists, ctx)[1]


@hookimpl
def crs_bench_register_metrics(registry) -> None:
    registry.add("longtail", LongTailMetrics,
                 "Tier-Recall@k (head/body/tail/cold with n), PWP@k, Coverage@k, ILD@k and ARP@k.", version="1",
                 spec=SPEC)


SPEC = MetricSpec(
    task="rec",
    keys={**{f"{tier}_recall@*": HIGHER for tier in TIER_NAMES}, **{f"n_{tier}": COUNT for tier in TIER_NAMES},
          "pwp@*": HIGHER, "coverage@*": HIGHER, "ild@*": HIGHER, "arp@*": LOWER},
    columns=("tail_recall@10", "coverage@10", "ild@10", "arp@10", "pwp@10"),
    params={"pwp_beta": MetricParam(float, DEFAULT_BETA, "PWP's popularity exponent β: weight (pop + 1)^-β")},
)
