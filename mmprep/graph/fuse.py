"""Fused item-item graphs across modalities: top-k of the weighted sum of per-modality cosine similarities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mmprep.errors import PrepError
from mmprep.graph.knn import knn_graph, l2_normalize


def normalize_weights(weights: Sequence[float], n_modalities: int) -> np.ndarray:
    """Check the modality weights (non-negative, one per modality, positive sum) and scale them to sum 1."""
    w = np.asarray(list(weights), dtype=np.float64)
    if w.shape != (n_modalities,):
        raise PrepError(f"got {w.size} fusion weights for {n_modalities} modalities")
    if np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
        raise PrepError(f"fusion weights must be non-negative with a positive sum, got {list(weights)}")
    return w / w.sum()


def fuse_features(features: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Concatenate ``sqrt(w_m) * X̂_m`` (X̂ row-normalised): inner products equal ``Σ_m w_m cos_m(i, j)``.

    So the exact kNN of the fused similarity is an inner-product kNN on this matrix; no N x N matrix is built.
    """
    if not features:
        raise PrepError("fusion needs at least one modality")
    n = features[0].shape[0]
    if any(f.shape[0] != n for f in features):
        raise PrepError(f"feature row counts differ: {[f.shape[0] for f in features]}")
    w = normalize_weights(weights, len(features))
    parts = [l2_normalize(f) * np.float32(np.sqrt(wm)) for f, wm in zip(features, w, strict=True)]
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


def fused_knn_graph(
    features: Sequence[np.ndarray], weights: Sequence[float], k: int = 10, **kwargs: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of ``Σ_m w_m cos_m`` per item (weights scaled to sum 1); same options as :func:`knn_graph`."""
    return knn_graph(fuse_features(features, weights), k, normalize=False, **kwargs)
