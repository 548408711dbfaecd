"""Graph propagation building blocks (sparse @ dense in float32, also under autocast)."""

from __future__ import annotations

import torch

from mmtrain.graph.adjacency import SparseOperator


def spmm(adjacency: SparseOperator, dense: torch.Tensor) -> torch.Tensor:
    """``adjacency @ dense``, always in float32 (sparse kernels lack half-precision support)."""
    with torch.autocast(device_type=dense.device.type, enabled=False):
        return adjacency @ dense.float()


def lightgcn_propagate(adjacency: SparseOperator, embeddings: torch.Tensor, n_layers: int) -> torch.Tensor:
    """LightGCN layer mean ``mean(E, ÂE, …, Â^L E)`` (layer 0 included; docs/models/README.md notation)."""
    layer = embeddings.float()
    total = layer
    for _ in range(n_layers):
        layer = spmm(adjacency, layer)
        total = total + layer
    return total / (n_layers + 1)
