"""Graph building blocks shared by all models: U-I adjacency normalisations, kNN graphs, propagation."""

from mmtrain.graph.adjacency import (
    NORMS,
    SparseOperator,
    bipartite_block,
    normalize,
    sparse_matrix,
    ui_adjacency,
)
from mmtrain.graph.knn import KNN_NORMS, knn_adjacency, knn_from_features
from mmtrain.graph.propagate import lightgcn_propagate, spmm

__all__ = [
    "KNN_NORMS",
    "NORMS",
    "SparseOperator",
    "bipartite_block",
    "knn_adjacency",
    "knn_from_features",
    "lightgcn_propagate",
    "normalize",
    "sparse_matrix",
    "spmm",
    "ui_adjacency",
]
