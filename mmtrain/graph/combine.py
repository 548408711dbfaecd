"""Weighted sums of sparse item-item graphs (e.g. FREEDOM's ``A = Σ_m w_m Â_m``), kept sparse."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mmtrain.graph.adjacency import SparseOperator, sparse_matrix


def weighted_sum(graphs: Sequence[SparseOperator], weights: Sequence[float]) -> SparseOperator:
    """``Σ w_m A_m`` of same-shape sparse operators; memory is the sum of their non-zeros."""
    if len(graphs) != len(weights) or not graphs:
        raise ValueError("weighted_sum needs one weight per graph and at least one graph")
    rows = torch.cat([g.indices()[0] for g in graphs])
    cols = torch.cat([g.indices()[1] for g in graphs])
    values = torch.cat([g.values() * float(w) for g, w in zip(graphs, weights, strict=True)])
    shape = tuple(graphs[0].shape)
    return SparseOperator(sparse_matrix(rows, cols, values, (shape[0], shape[1])))
