"""Item-item kNN graphs from features (cosine), computed blockwise with torch; normalised as sparse matrices.

``knn_from_features`` never materialises the N x N similarity matrix: it scores ``block`` rows at a time
against all items and keeps each row's top-k (docs/graphs.md "kNN graphs"). Equal scores are broken by the lower item index, the rule
``mmprep graph`` writes into stored graphs (docs/FORMAT.md, "Graphs"), so a computed graph picks the same
neighbours among ties as a stored one. The original codes keep the item itself in its top-k (a self loop,
similarity 1); ``include_self`` chooses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmtrain.graph.adjacency import SparseOperator, normalize, sparse_matrix

KNN_NORMS = ("sym", "rw", "binary", "none")
BLOCK_ELEMENTS = 1 << 24  # similarity entries per block (64 MiB of float32)


def knn_from_features(
    features: torch.Tensor, k: int, include_self: bool = True, block: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k cosine neighbours of every row: ``(indices int64 [N, k], similarities [N, k])``, nearest first,
    equal similarities by lower index."""
    n = features.shape[0]
    k = min(int(k), n if include_self else n - 1)
    x = F.normalize(features.float(), dim=1)
    block = block or max(1, BLOCK_ELEMENTS // max(n, 1))
    out_idx, out_val = [], []
    for start in range(0, n, block):
        sim = x[start : start + block] @ x.T
        rows = torch.arange(sim.shape[0], device=sim.device)
        own = sim[rows, rows + start].clone()
        # the item itself is always first (kept) or never there (excluded), whatever its duplicates score
        sim[rows, rows + start] = float("inf") if include_self else float("-inf")
        val, idx = topk_lower_index_first(sim, k)
        if include_self:
            val[:, 0] = own
        out_idx.append(idx)
        out_val.append(val)
    return torch.cat(out_idx), torch.cat(out_val)


def topk_lower_index_first(sim: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise top-k ordered by (-score, column index): deterministic where ``torch.topk`` is not.

    Every column scoring above the k-th value is kept; among the columns equal to it, the lowest indices fill
    the remaining places. The kept columns (ascending) are then sorted stably by descending score.
    """
    kth = torch.topk(sim, k, dim=1).values[:, -1:]
    above = sim > kth
    tied = sim == kth
    room = k - above.sum(1, keepdim=True)
    keep = above | (tied & (torch.cumsum(tied.int(), 1) <= room))
    idx = keep.nonzero()[:, 1].reshape(sim.shape[0], k)
    val = sim.gather(1, idx)
    order = torch.sort(val, dim=1, descending=True, stable=True).indices
    return val.gather(1, order), idx.gather(1, order)


def knn_adjacency(indices: torch.Tensor, values: torch.Tensor, norm: str = "sym") -> SparseOperator:
    """Sparse N x N matrix keeping row i's neighbours (directed, not symmetrised), normalised.

    ``sym``: ``d_i^-1/2 S_ij d_j^-1/2`` with d the row sums of the kept similarities (LATTICE, MICRO, MGCN,
    SOIL); ``rw``: ``d_i^-1 S_ij``; ``binary``: entries 1 then ``sym`` on row counts, i.e. about 1/k (FREEDOM);
    ``none``: the raw similarities.
    """
    if norm not in KNN_NORMS:
        raise ValueError(f"unknown kNN normalisation {norm!r} (choose from {', '.join(KNN_NORMS)})")
    n, k = indices.shape
    rows = torch.arange(n, device=indices.device).repeat_interleave(k)
    cols = indices.reshape(-1).long()
    vals = values.reshape(-1).float()
    if norm == "none":
        return SparseOperator(sparse_matrix(rows, cols, vals, (n, n)))
    if norm == "binary":
        return normalize(rows, cols, torch.ones_like(vals), n, "sym")
    return normalize(rows, cols, vals, n, norm)
