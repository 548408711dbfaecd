"""Summary statistics of a dataset directory (``mmprep info``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from mmformat.layout import ITEM_TEXT_FIELDS
from mmprep.dataset.reader import load_dataset

PERCENTILES = (0, 25, 50, 75, 90, 99, 100)


def degree_percentiles(idx: np.ndarray, n: int) -> dict[str, float]:
    """Percentiles of the per-entity interaction count (entities with none count as 0)."""
    deg = np.bincount(idx, minlength=n)
    values = np.percentile(deg, PERCENTILES) if n else np.zeros(len(PERCENTILES))
    return {f"p{p}": float(v) for p, v in zip(PERCENTILES, values, strict=True)} | {"mean": float(deg.mean())}


def graph_info(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The kNN graphs the manifest lists (``mmprep graph``): file -> modality, k and edge count."""
    return {
        path: {"modality": entry.get("modality"), "k": entry.get("k"), "edges": entry.get("rows")}
        for path, entry in sorted((manifest.get("graphs") or {}).items())
    }


def dataset_info(root: Path) -> dict[str, Any]:
    """Counts, density, degree percentiles, split sizes, item-field and modality coverage, kNN graphs."""
    ds = load_dataset(root)
    inter = ds.interactions()
    n_u, n_i, n = ds.n_users, ds.n_items, len(inter)
    info: dict[str, Any] = {
        "name": ds.name,
        "users": n_u,
        "items": n_i,
        "interactions": n,
        "density": n / (n_u * n_i) if n_u and n_i else 0.0,
        "user_degree": degree_percentiles(inter.user_idx, n_u),
        "item_degree": degree_percentiles(inter.item_idx, n_i),
        "splits": {},
        "item_fields": {},
        "modalities": {},
        "graphs": graph_info(ds.manifest),
    }
    for split_set in ds.split_sets():
        info["splits"][split_set] = {name: len(s) for name, s in ds.splits(split_set).items()}
    items = ds.items
    for field in ITEM_TEXT_FIELDS:
        col = items.column(field)
        present = len(col) - col.null_count
        if field != "categories" and present:
            present = int(pc.sum(pc.greater(pc.utf8_length(col), 0)).as_py() or 0)
        info["item_fields"][field] = present
    for modality in ds.modalities():
        matrix, mask = ds.feature(modality)
        info["modalities"][modality] = {"dim": int(matrix.shape[1]), "present": int(mask.sum())}
    return info
