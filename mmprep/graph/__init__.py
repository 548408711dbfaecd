"""Item-item kNN graphs from item features (FAISS), per modality and fused."""

from mmprep.graph.fuse import fuse_features, fused_knn_graph
from mmprep.graph.knn import knn_graph, recall_at_k, sample_recall
from mmprep.graph.table import graph_table, read_knn_graph

__all__ = [
    "fuse_features",
    "fused_knn_graph",
    "graph_table",
    "knn_graph",
    "read_knn_graph",
    "recall_at_k",
    "sample_recall",
]
