"""Add kNN graph files to a dataset: ``graphs/knn_<modality>_k<k>.parquet`` and the fused graph, then the manifest."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmformat import layout as fmt
from mmformat.atomic import write_parquet
from mmformat.progress import bar as progress_bar
from mmformat.update import dataset_update
from mmprep.dataset.reader import Dataset, load_dataset
from mmprep.errors import PrepError
from mmprep.graph.fuse import fuse_features, normalize_weights
from mmprep.graph.knn import SearchInfo, check_gpu_request, knn_graph, sample_recall
from mmprep.graph.table import graph_table

log = logging.getLogger(__name__)


@dataclass
class GraphOptions:
    """How to build the graphs (see ``mmprep graph --help``)."""

    k: int = 10
    index: str = "exact"
    device: str = "auto"
    block_size: int = 4096
    exclude_self: bool = True
    recall_sample: int = 1000
    seed: int = 0
    nlist: int | None = None
    nprobe: int | None = None
    hnsw_m: int | None = None
    ef_search: int | None = None
    gpus: str | None = None
    gpu_layout: str = "auto"


def _build_one(matrix: np.ndarray, opts: GraphOptions, label: str, normalize: bool) -> tuple[Any, ...]:
    info = SearchInfo(backend="", index=opts.index)
    params = {
        "nlist": opts.nlist,
        "nprobe": opts.nprobe,
        "hnsw_m": opts.hnsw_m,
        "ef_search": opts.ef_search,
        "seed": opts.seed,
        "gpu_layout": opts.gpu_layout,
    }
    start = time.perf_counter()
    with progress_bar(total=matrix.shape[0], unit="item", desc=f"knn {label}", leave=False) as bar:
        indices, scores = knn_graph(
            matrix,
            opts.k,
            index=opts.index,
            exclude_self=opts.exclude_self,
            normalize=normalize,
            block_size=opts.block_size,
            device=opts.device,
            params=params,
            progress=bar.update,
            info=info,
            gpus=opts.gpus,
        )
    elapsed = time.perf_counter() - start
    entry: dict[str, Any] = {
        "k": opts.k,
        "metric": "cosine",
        "index": opts.index,
        "backend": info.backend,
        "index_params": info.params,
        "exclude_self": opts.exclude_self,
        "ties": "score desc, then neighbor_idx asc",
        "rows": int(indices.size),
        "zero_vectors": info.zero_rows,
        "build_seconds": round(elapsed, 3),
    }
    if opts.index != "exact" and opts.recall_sample > 0:
        recall, size = sample_recall(
            matrix,
            indices,
            sample=opts.recall_sample,
            seed=opts.seed,
            exclude_self=opts.exclude_self,
            normalize=normalize,
        )
        entry.update(recall_at_k=round(recall, 6), recall_sample=size)
        log.info(
            "%s: recall@%d of %s against exact search on %d items: %.4f",
            label,
            opts.k,
            opts.index,
            size,
            recall,
        )
    return indices, scores, entry


def _feature_hashes(manifest: dict[str, Any], modalities: Sequence[str]) -> dict[str, str | None]:
    by_path = {f["path"]: f["sha256"] for f in manifest.get("files", [])}
    return {m: by_path.get(fmt.feature_path(m)) for m in modalities}


def add_graphs(
    root: Path,
    modalities: Sequence[str],
    opts: GraphOptions,
    fuse_weights: Sequence[float] | None = None,
    per_modality: bool = True,
) -> dict[str, dict[str, Any]]:
    """Build and write the graphs of ``modalities`` (and the fused one), then update the manifest.

    Returns the manifest entries written, keyed by graph file path.
    """
    root = Path(root)
    check_gpu_request(opts.device, opts.index, opts.gpus, opts.gpu_layout)
    ds = load_dataset(root)
    if not modalities:
        raise PrepError("give at least one --modality", root)
    missing = [m for m in modalities if m not in ds.modalities()]
    if missing:
        have = ", ".join(ds.modalities()) or "none"
        raise PrepError(
            f"no features for {', '.join(missing)} (available: {have}; run `mmprep features`)", root
        )
    if len(set(modalities)) != len(modalities):
        raise PrepError(f"modality given twice: {list(modalities)}")
    if fuse_weights is not None and len(modalities) < 2:
        raise PrepError("--fuse needs at least two --modality options")
    targets = [fmt.graph_path(m, opts.k) for m in modalities] if per_modality else []
    if fuse_weights is not None:
        targets.append(fmt.graph_path("fused", opts.k))
    with dataset_update(root, replacing=targets) as update:
        written = _write_graphs(load_dataset(root), modalities, opts, fuse_weights, per_modality)
        graphs = dict(update.manifest.get("graphs") or {})
        graphs.update(written)
        update.manifest["graphs"] = graphs
        update.wrote(*written)
    return written


def _write_graphs(
    ds: Dataset,
    modalities: Sequence[str],
    opts: GraphOptions,
    fuse_weights: Sequence[float] | None,
    per_modality: bool,
) -> dict[str, dict[str, Any]]:
    """Build and write the graph files (features are read through the checking reader: NaN is refused)."""
    root = ds.root
    hashes = _feature_hashes(ds.manifest, modalities)
    written: dict[str, dict[str, Any]] = {}
    features = {m: ds.feature(m) for m in modalities}
    if per_modality:
        for m in modalities:
            matrix, mask = features[m]
            indices, scores, entry = _build_one(matrix, opts, m, normalize=True)
            entry.update(modality=m, features_sha256=hashes[m], present=int(mask.sum()))
            path = fmt.graph_path(m, opts.k)
            write_parquet(root / path, graph_table(indices, scores))
            written[path] = entry
    if fuse_weights is not None:
        weights = normalize_weights(fuse_weights, len(modalities))
        fused = fuse_features([features[m][0] for m in modalities], weights)
        indices, scores, entry = _build_one(fused, opts, "fused", normalize=False)
        entry.update(
            modality="fused",
            modalities=list(modalities),
            weights={m: float(w) for m, w in zip(modalities, weights, strict=True)},
            fusion="top-k of sum_m w_m * cosine_m (weights scaled to sum 1)",
            features_sha256=hashes,
        )
        path = fmt.graph_path("fused", opts.k)
        write_parquet(root / path, graph_table(indices, scores))
        written[path] = entry
    return written
