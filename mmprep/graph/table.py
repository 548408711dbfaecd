"""The on-disk kNN graph table ``graphs/knn_<name>_k<k>.parquet`` (docs/FORMAT.md, "Graphs")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmformat.layout import GRAPH_SCHEMA
from mmprep.errors import PrepError


def graph_table(indices: np.ndarray, scores: np.ndarray) -> pa.Table:
    """``k`` rows per item, sorted by (item_idx, rank); rank 0 is the nearest neighbour."""
    n, k = indices.shape
    return pa.table(
        [
            pa.array(np.repeat(np.arange(n, dtype=np.int32), k)),
            pa.array(np.ascontiguousarray(indices, dtype=np.int32).ravel()),
            pa.array(np.ascontiguousarray(scores, dtype=np.float32).ravel()),
            pa.array(np.tile(np.arange(k, dtype=np.int16), n)),
        ],
        schema=GRAPH_SCHEMA,
    )


def read_knn_graph(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a graph file back as ``(indices int32 [N,k], scores float32 [N,k])``."""
    t = pq.read_table(path)
    if not t.schema.equals(GRAPH_SCHEMA):
        raise PrepError(f"graph schema {t.schema} != {GRAPH_SCHEMA}", path)
    item = t.column("item_idx").to_numpy()
    rank = t.column("rank").to_numpy().astype(np.int64)
    n = int(item.max()) + 1 if len(item) else 0
    k = int(rank.max()) + 1 if len(rank) else 0
    if len(item) != n * k:
        raise PrepError(f"{len(item)} rows is not {n} items x {k} neighbours", path)
    indices = np.empty((n, k), dtype=np.int32)
    scores = np.empty((n, k), dtype=np.float32)
    indices[item, rank] = t.column("neighbor_idx").to_numpy()
    scores[item, rank] = t.column("score").to_numpy()
    return indices, scores
