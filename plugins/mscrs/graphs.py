"""The MSCRS semantic graphs (SYSTEMS.md §9, "Graphs"), built once and cached, vectorised throughout.

* collaborative: entity co-mentions C = Mᵀ M over the entity sets Q_y of the training conversations (M the
  conversation × entity incidence), an undirected edge wherever C_ij ≥ threshold (i ≠ j): one sparse
  product, never a loop over entity pairs;
* text / image: A_ij = cos(x_i, x_j) with negatives set to 0, kNN-sparsified to the top k per item (binary
  edges, item -> neighbour): one matrix product and a top-k per chunk of rows, never a loop over items;
* propagation: LightGCN (torch-geometric `LGConv`, the symmetric normalisation D^-1/2 A D^-1/2 of §1.4),
  with the normalised adjacency built once as a sparse CSR matrix (6x faster per layer than re-normalising
  the edge list on every call; `benchmarks/bench_mscrs.py`).

Cache entries are `.npz` files read with ``allow_pickle=False`` under ``<cache>/mscrs/``, keyed by a hash of
everything that changes the edges (dataset fingerprint, the training entity sets, threshold, k, features).
"""
from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from harness.data import DataError, Dataset, Split

ITEM_TEXT_TEMPLATE = "{title}. Related: {neighbours}."  # INSPIRED and ReDial alike: the shared data has no plots
ITEM_TEXT_VERSION = "1"
MAX_NEIGHBOUR_NAMES = 12


def conversation_entity_sets(split: Split) -> list[list[int]]:
    """Q_y: the distinct KG entities (movies included) each training conversation mentions."""
    return [sorted({entity for turn in dialogue.turns for entity in turn.entities}) for dialogue in split.dialogues]


def co_mention_edges(entity_sets: Sequence[Sequence[int]], num_entities: int, threshold: int = 1) -> np.ndarray:
    """[2, E] undirected edges (both directions) between entities mentioned together in at least
    `threshold` conversations."""
    from scipy import sparse

    rows = np.repeat(np.arange(len(entity_sets)), [len(s) for s in entity_sets])
    cols = np.fromiter((e for s in entity_sets for e in s), dtype=np.int64, count=int(sum(len(s) for s in entity_sets)))
    incidence = sparse.csr_matrix((np.ones(len(cols), dtype=np.int32), (rows, cols)),
                                  shape=(len(entity_sets), num_entities))
    counts = (incidence.T @ incidence).tocoo()
    keep = (counts.row != counts.col) & (counts.data >= threshold)
    return np.stack([counts.row[keep], counts.col[keep]]).astype(np.int64)


def knn_edges(features: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """[2, E] edges item -> each of its (at most) k most cosine-similar other items with positive
    similarity (A_ij = max(cos, 0), then top-k), computed chunk by chunk of rows on torch."""
    import torch

    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    x = torch.nn.functional.normalize(x, dim=1)
    k = min(k, x.shape[0] - 1)
    sources, targets = [], []
    for start in range(0, x.shape[0], chunk):
        block = x[start:start + chunk] @ x.T
        block[torch.arange(block.shape[0]), torch.arange(start, start + block.shape[0])] = float("-inf")  # no self
        values, neighbours = block.topk(k, dim=1)
        positive = values > 0
        sources.append(torch.arange(start, start + block.shape[0]).unsqueeze(1).expand_as(neighbours)[positive])
        targets.append(neighbours[positive])
    return torch.stack([torch.cat(sources), torch.cat(targets)]).numpy().astype(np.int64)


def normalized_adjacency(edges: np.ndarray, num_nodes: int, device: str = "cpu"):
    """LightGCN's D^-1/2 A D^-1/2 as a sparse CSR matrix with rows = receiving nodes, from edges [2, E] given
    as (node, neighbour): node aggregates its neighbours. Built once (torch-geometric's `gcn_norm`, as
    `LGConv(normalize=True)` would on every call), so a propagation step is one sparse product."""
    import torch
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    flow = torch.from_numpy(np.ascontiguousarray(edges[::-1]))  # neighbour -> node: messages into the node
    index, weight = gcn_norm(flow, None, num_nodes, add_self_loops=False)
    matrix = torch.sparse_coo_tensor(index.flip(0), weight, (num_nodes, num_nodes), check_invariants=True)
    with warnings.catch_warnings():  # torch calls CSR support "beta"; PyG's spmm wants CSR (COO is converted)
        warnings.simplefilter("ignore", UserWarning)
        return matrix.coalesce().to_sparse_csr().to(device)


def symmetrised(edges: np.ndarray) -> np.ndarray:
    """The undirected version of a directed edge list (each pair once per direction)."""
    both = np.concatenate([edges, edges[::-1]], axis=1)
    return np.unique(both, axis=1)


def item_texts(dataset: Dataset) -> list[str]:
    """One text per catalogue item: its title and the names of its KG neighbours (the CPU substitute for
    the paper's LLM-written descriptions)."""
    kg = dataset.kg
    names = kg.entity_names or [str(i) for i in range(kg.num_entities)]
    heads, tails = np.asarray(kg.heads, dtype=np.int64), np.asarray(kg.tails, dtype=np.int64)
    order = np.argsort(heads, kind="stable")
    heads, tails = heads[order], tails[order]
    starts = np.searchsorted(heads, np.arange(kg.num_entities))
    ends = np.searchsorted(heads, np.arange(kg.num_entities), side="right")
    texts = []
    for title, entity in zip(dataset.catalogue.titles, kg.item_entities):
        neighbours = [names[t] for t in tails[starts[entity]:ends[entity]][:MAX_NEIGHBOUR_NAMES] if t != entity]
        texts.append(ITEM_TEXT_TEMPLATE.format(title=title, neighbours=", ".join(neighbours) or "none"))
    return texts


def load_item_features(path: Path, num_items: int) -> np.ndarray:
    """A user-supplied item feature matrix (`.npy`, one row per catalogue item, finite values), refused with
    its path and the problem otherwise."""
    path = Path(path)
    try:
        features = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(str(path), None, None, f"not a readable .npy matrix ({error})") from None
    if features.ndim != 2 or features.shape[0] != num_items:
        raise DataError(str(path), None, None, f"item features must be a [{num_items}, d] matrix (one row per "
                                               f"catalogue item), got shape {list(features.shape)}")
    if not np.issubdtype(features.dtype, np.number) or not np.isfinite(features).all():
        bad = int((~np.isfinite(features)).any(axis=1).argmax()) if np.issubdtype(features.dtype, np.number) else 0
        raise DataError(str(path), None, None, f"item features must be finite numbers (row {bad} is not)")
    return features.astype(np.float32)


def cached_edges(cache_dir: Path, parts: Sequence[str], build: Callable[[], np.ndarray]) -> np.ndarray:
    """`build()` once per key (the hash of `parts`), stored as npz; a damaged entry is rebuilt."""
    from harness.api import write_atomic

    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]
    path = Path(cache_dir) / "mscrs" / f"edges-{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return stored["edges"]
        except (OSError, ValueError, KeyError):
            pass
    edges = build()
    buffer = io.BytesIO()
    np.savez(buffer, edges=edges)
    write_atomic(path, buffer.getvalue())
    return edges


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
