"""Learned item-item graphs (LATTICE, MICRO): sparse top-k cosine graphs of trainable item representations.

A graph is kept as fixed-width rows ``(indices [N, K], values [N, K])``: row i's K neighbours and weights
(duplicates allowed; they add up). The neighbours are chosen without gradients by the blockwise top-k of
:func:`~mmtrain.graph.knn.knn_from_features` (``block`` rows at a time, so the N x N similarity matrix exists
only when ``block >= N``); the kept values are then recomputed as differentiable cosines of the chosen pairs,
so gradients reach the representations through the O(N·K) kept entries only.

Memory: indices and values O(N·K); propagation gathers ``[N, K, d]`` neighbour rows (and keeps them for the
backward pass); building holds one ``[block, N]`` similarity block at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmtrain.graph.knn import knn_from_features


def learned_knn(x: torch.Tensor, k: int, block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k cosine neighbours of every row of ``x`` (self included): ``(indices, cosines)``, the cosines
    differentiable with respect to ``x``."""
    with torch.no_grad():
        indices, _ = knn_from_features(x.detach(), k, include_self=True, block=block)
    unit = F.normalize(x.float(), dim=1)
    values = (unit.unsqueeze(1) * unit[indices]).sum(-1)
    return indices, values


def sym_normalize(indices: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``d_i^-1/2 S_ij d_j^-1/2`` with ``d`` the row sums of the kept values (graphs.md §1, zero degree -> 0)."""
    degree = values.sum(1)
    inv_sqrt = torch.where(degree > 0, degree.clamp(min=1e-12).rsqrt(), torch.zeros_like(degree))
    return inv_sqrt.unsqueeze(1) * values * inv_sqrt[indices]


def propagate_rows(indices: torch.Tensor, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``A @ x`` for the row graph ``A`` (differentiable in ``values`` and ``x``; no scatter, deterministic)."""
    return torch.einsum("nk,nkd->nd", values.float(), x.float()[indices])


def rows_to_dense(indices: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """The dense N x N matrix of a row graph (tests and small-scale inspection only)."""
    dense = torch.zeros(n, n, dtype=values.dtype, device=values.device)
    rows = torch.arange(n, device=indices.device).unsqueeze(1).expand_as(indices)
    return dense.index_put((rows.reshape(-1), indices.reshape(-1)), values.reshape(-1), accumulate=True)
