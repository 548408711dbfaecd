"""Add ``features/<name>.npy`` and its mask to a dataset: item text, images (folder or URLs) or an Amazon ``.b``.

Row i is always item_idx i. Items without content are left out of encoding, flagged False in the mask and
filled (``mean`` of the present rows, as MMRec does for images, or ``zeros``). Encoding runs in resumable chunks
(:mod:`mmprep.features.chunked`). The matrix and mask are renamed into ``features/``, the partial directory is
removed, and the manifest is rewritten last.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from mmformat import layout as fmt
from mmformat.update import dataset_update
from mmprep.dataset.reader import load_dataset
from mmprep.dataset.writer import write_feature
from mmprep.errors import PrepError
from mmprep.features.amazon_b import DEFAULT_DIM, read_amazon_b
from mmprep.features.backbones import image_encoder, resolve_device, resolve_precision, text_encoder
from mmprep.features.chunked import ChunkStore, fingerprint, plan_chunks, run_chunks
from mmprep.features.download import default_cache_dir, download_images, fetch_in_threads, read_url_file
from mmprep.features.folder import folder_images
from mmprep.features.images import encode_image_batches
from mmprep.features.ray_engine import (
    EncoderSpec,
    RayOptions,
    build_texts_on_ray,
    encode_on_ray,
    fetch_on_ray,
    session,
)
from mmprep.features.text import build_texts
from mmprep.features.weights import DEFAULT_TEXT_MODEL, resolve_sentence_model

log = logging.getLogger(__name__)

FILL_POLICIES = ("mean", "zeros")


@dataclass
class RunOptions:
    """Settings shared by every encoder run."""

    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 64
    chunk_size: int = 2048
    workers: int = 2
    normalize: bool = False
    fill: str = "mean"
    seed: int = 0


def l2_rows(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation (float32; zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norm == 0, 1, norm)).astype(np.float32)


def apply_fill(matrix: np.ndarray, present: np.ndarray, fill: str) -> np.ndarray:
    """Fill rows without content: ``mean`` of the present rows (float64 mean) or ``zeros``."""
    if fill not in FILL_POLICIES:
        raise PrepError(f"unknown fill policy {fill!r} (choose from {', '.join(FILL_POLICIES)})")
    matrix[~present] = 0.0
    if fill == "mean" and present.any() and not present.all():
        matrix[~present] = matrix[present].mean(axis=0, dtype=np.float64).astype(np.float32)
    return matrix


def _items_sha(manifest: dict[str, Any]) -> str | None:
    return next((f["sha256"] for f in manifest.get("files", []) if f["path"] == fmt.ITEMS), None)


def _check_name(name: str) -> None:
    if not name or not all(c.isdigit() or ("a" <= c <= "z") or c == "_" for c in name):
        raise PrepError(f"feature name {name!r} must match [a-z0-9_]+")


def finish(
    root: Path, name: str, matrix: np.ndarray, present: np.ndarray, fill: str, entry: dict[str, Any]
) -> dict[str, Any]:
    """Fill, write matrix and mask atomically, then update ``features.<name>`` in the manifest (last).

    The write is a :func:`~mmformat.update.dataset_update`: the dataset is locked and its other files checked
    against the manifest first; a failure (a full disk) keeps the old matrix, mask and manifest and the
    finished chunks, so the run can be resumed.
    """
    apply_fill(matrix, present, fill)
    entry = {
        **entry,
        "dim": int(matrix.shape[1]),
        "dtype": "float32",
        "present": int(present.sum()),
        "missing": int((~present).sum()),
        "fill": fill,
    }
    files = [fmt.feature_path(name), fmt.mask_path(name)]
    with dataset_update(root, replacing=files) as update:
        write_feature(root, name, matrix, present)
        update.wrote(*files)
        manifest = update.manifest
        features = dict(manifest.get("features") or {})
        features[name] = entry
        manifest["features"] = features
        graphs = manifest.get("graphs") or {}
        stale = [p for p, g in graphs.items() if name in (g.get("modality"), *g.get("modalities", []))]
        if stale:
            log.warning(
                "graphs built from the old %r features are now stale: %s (rerun mmprep graph)", name, stale
            )
    shutil.rmtree(root / fmt.FEATURES_DIR / f".partial-{name}", ignore_errors=True)
    return entry


def _label(modality: str, name: str) -> str:
    """The progress bar label: the output name, with the modality when the name does not say it."""
    return name if name == modality else f"{modality} {name}"


Runner = Callable[[ChunkStore, list[np.ndarray], str], None]


def _local_runner(opts: RunOptions, batches_fn) -> Runner:
    """Encode in this process: ``batches_fn(batches)`` yields ``(vectors, ok)`` per batch."""

    def run(store: ChunkStore, chunks: list[np.ndarray], desc: str) -> None:
        run_chunks(store, chunks, opts.batch_size, batches_fn, desc)

    return run


def _ray_runner(opts: RunOptions, ray: RayOptions, spec: EncoderSpec, batch_rows, decode=None) -> Runner:
    """Encode on Ray model actors (:func:`mmprep.features.ray_engine.encode_on_ray`)."""

    def run(store: ChunkStore, chunks: list[np.ndarray], desc: str) -> None:
        normalize = l2_rows if opts.normalize else None
        encode_on_ray(store, chunks, opts.batch_size, spec, batch_rows, ray, desc, normalize, decode)

    return run


def _engine(ray: RayOptions | None) -> AbstractContextManager:
    """A Ray session for the Ray engine; nothing for the local one."""
    return session(ray) if ray is not None else nullcontext()


def _engine_entry(ray: RayOptions | None) -> dict[str, Any]:
    """How the features were computed; not part of the fingerprint, since both engines write the same chunks."""
    if ray is None:
        return {"engine": "local"}
    return {"engine": "ray", "ray_workers": ray.workers, "gpus_per_worker": ray.gpus_per_worker}


def _encode_plan(
    root: Path,
    name: str,
    plan: np.ndarray,
    n_items: int,
    opts: RunOptions,
    params: dict[str, Any],
    run: Runner,
    desc: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Run (or resume) the chunked encoding of ``plan`` and assemble the matrix."""
    chunks = plan_chunks(plan, opts.chunk_size)
    store = ChunkStore(root, name, fingerprint(params, plan), len(chunks), params)
    run(store, chunks, desc)
    if store.dim is None:
        raise PrepError(f"no item has content for {name!r}; nothing to encode", root)
    return store.assemble(chunks, n_items, store.dim)


def _normalized(batches: Iterator[tuple[np.ndarray, np.ndarray]], normalize: bool):
    for vectors, ok in batches:
        yield (l2_rows(vectors) if normalize else vectors), ok


def extract_text(
    root: Path,
    *,
    name: str = "text",
    fields: Sequence[str] | None = None,
    template: str | None = None,
    encoder: str = "sbert",
    model: str | None = None,
    pretrained: str | None = None,
    opts: RunOptions | None = None,
    ray: RayOptions | None = None,
) -> dict[str, Any]:
    """Encode item text (see :func:`mmprep.features.text.build_texts`) into ``features/<name>.npy``.

    ``ray`` runs it on Ray (:mod:`mmprep.features.ray_engine`) instead of in this process; same output.
    """
    opts = opts or RunOptions()
    _check_name(name)
    root = Path(root)
    ds = load_dataset(root)
    with _engine(ray):
        return _extract_text(root, ds, name, fields, template, encoder, model, pretrained, opts, ray)


def _extract_text(root, ds, name, fields, template, encoder, model, pretrained, opts, ray) -> dict[str, Any]:
    if ray is None:
        texts, present, used = build_texts(ds.items, fields, template)
    else:
        texts, present, used = build_texts_on_ray(ds.items, fields, template)
    if encoder == "sbert":  # a model that cannot be had offline fails here, before torch is imported
        resolve_sentence_model(model or DEFAULT_TEXT_MODEL)
    device = resolve_device(opts.device) if ray is None else ray.device(opts.device)
    precision = resolve_precision(opts.precision, device)
    start = time.perf_counter()
    # with Ray the actors load the model on their device; the driver's CPU copy only describes it
    enc = text_encoder(
        encoder, model, pretrained, *((device, precision) if ray is None else ("cpu", "fp32")), opts.seed
    )
    described = enc.describe()
    lengths = np.asarray(pc.utf8_length(texts), dtype=np.int64)
    items = np.flatnonzero(present)
    plan = items[np.argsort(-lengths[items], kind="stable")]  # longest first: similar lengths share a batch
    entry = {
        "modality": "text",
        "source": "items.parquet",
        **described,
        "fields": used,
        "template": template,
        "normalize": opts.normalize,
        "device": device,
        "precision": precision,
        "batch_size": opts.batch_size,
        "chunk_size": opts.chunk_size,
        "seed": opts.seed,
    }
    params = {**entry, "n_items": ds.n_items, "items_sha256": _items_sha(ds.manifest)}
    entry.update(_engine_entry(ray))

    def batches_fn(batches: list[np.ndarray]):
        def gen():
            for b in batches:
                yield enc.encode(texts.take(b).to_pylist()), np.ones(len(b), dtype=bool)

        return _normalized(gen(), opts.normalize)

    if ray is None:
        run = _local_runner(opts, batches_fn)
    else:
        spec = EncoderSpec("text", encoder, model, pretrained, device, precision, opts.seed)
        run = _ray_runner(opts, ray, spec, lambda _, b: {"text": texts.take(b).to_pylist()})
    matrix, ok = _encode_plan(root, name, plan, ds.n_items, opts, params, run, _label("text", name))
    entry["seconds"] = round(time.perf_counter() - start, 3)
    return finish(root, name, matrix, ok & present, opts.fill, entry)


@dataclass
class DownloadOptions:
    """URL source settings."""

    url_file: Path | None = None
    cache_dir: Path | None = None
    workers: int = 16
    retries: int = 3
    timeout: float = 20.0
    backoff: float = 0.5
    failure_log: Path | None = None


def _paths_digest(paths: Sequence[str | None]) -> str:
    return hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()


def extract_images(
    root: Path,
    *,
    name: str = "image",
    source: str = "folder",
    image_dir: Path | None = None,
    download: DownloadOptions | None = None,
    backbone: str = "clip",
    model: str | None = None,
    pretrained: str | None = None,
    opts: RunOptions | None = None,
    ray: RayOptions | None = None,
) -> dict[str, Any]:
    """Encode item images from a folder (``<item_id>.<ext>``) or from URLs into ``features/<name>.npy``.

    ``ray`` decodes and encodes on Ray (:mod:`mmprep.features.ray_engine`) instead of in this process.
    """
    opts = opts or RunOptions()
    _check_name(name)
    root = Path(root)
    ds = load_dataset(root)
    with _engine(ray):
        return _extract_images(
            root, ds, name, source, image_dir, download, backbone, model, pretrained, opts, ray
        )


def _extract_images(
    root, ds, name, source, image_dir, download, backbone, model, pretrained, opts, ray
) -> dict[str, Any]:
    item_ids = ds.items.column("item_id").combine_chunks()
    entry: dict[str, Any] = {"modality": "image"}
    if source == "folder":
        if image_dir is None:
            raise PrepError("--source folder needs --image-dir")
        paths, stats = folder_images(image_dir, item_ids)
        entry.update(source="folder", image_dir=str(Path(image_dir).resolve()), images=stats)
    elif source == "url":
        download = download or DownloadOptions()
        if download.url_file is not None:
            urls, url_stats = read_url_file(download.url_file, item_ids)
            entry.update(
                source="url", url_file=str(Path(download.url_file).resolve()), url_file_stats=url_stats
            )
        else:
            urls = ds.items.column("image_url").combine_chunks()
            entry.update(source="url", url_column="items.parquet:image_url")
        cache = Path(download.cache_dir) if download.cache_dir else default_cache_dir()
        paths, report = download_images(
            urls,
            item_ids,
            cache,
            workers=download.workers,
            retries=download.retries,
            timeout=download.timeout,
            backoff=download.backoff,
            failure_log=download.failure_log,
            fetcher=fetch_in_threads if ray is None else fetch_on_ray,
        )
        entry.update(cache_dir=str(cache), download=report.as_dict())
    else:
        raise PrepError(f"unknown image source {source!r} (choose folder, url or amazon-b)")
    device = resolve_device(opts.device) if ray is None else ray.device(opts.device)
    precision = resolve_precision(opts.precision, device)
    start = time.perf_counter()
    # with Ray the actors load the model on their device; the driver's CPU copy describes it and preprocesses
    enc = image_encoder(
        backbone, model, pretrained, *((device, precision) if ray is None else ("cpu", "fp32")), opts.seed
    )
    entry.update(
        **enc.describe(),
        input_shape=list(enc.input_shape()),
        normalize=opts.normalize,
        device=device,
        precision=precision,
        batch_size=opts.batch_size,
        chunk_size=opts.chunk_size,
        seed=opts.seed,
    )
    has_file = np.not_equal(np.asarray(paths, dtype=object), None).astype(bool)
    plan = np.flatnonzero(has_file)
    params = {
        **{k: v for k, v in entry.items() if k not in ("download", "images", "url_file_stats")},
        "n_items": ds.n_items,
        "paths_sha256": _paths_digest(paths),
    }
    entry.update(_engine_entry(ray))

    def batches_fn(batches: list[np.ndarray]):
        return _normalized(encode_image_batches(enc, paths, batches, opts.workers), opts.normalize)

    if ray is None:
        run = _local_runner(opts, batches_fn)
    else:
        spec = EncoderSpec("image", backbone, model, pretrained, device, precision, opts.seed)
        decode = {"preprocess": enc.preprocess, "shape": tuple(enc.input_shape())}
        run = _ray_runner(opts, ray, spec, lambda _, b: {"paths": [paths[i] for i in b]}, decode)
    matrix, ok = _encode_plan(root, name, plan, ds.n_items, opts, params, run, _label("image", name))
    entry["undecodable"] = int((has_file & ~ok).sum())
    entry["seconds"] = round(time.perf_counter() - start, 3)
    return finish(root, name, matrix, ok, opts.fill, entry)


def import_amazon_b(
    root: Path,
    b_file: Path,
    *,
    name: str = "image",
    dim: int = DEFAULT_DIM,
    fill: str = "mean",
    normalize: bool = False,
) -> dict[str, Any]:
    """Read McAuley's ``image_features_<Cat>.b`` into ``features/<name>.npy`` (MMRec: missing items get the mean)."""
    _check_name(name)
    root = Path(root)
    ds = load_dataset(root)
    start = time.perf_counter()
    matrix, found, stats = read_amazon_b(b_file, ds.items.column("item_id").combine_chunks(), dim)
    if normalize:
        matrix = l2_rows(matrix)
    entry = {
        "modality": "image",
        "source": "amazon-b",
        "model": "McAuley et al. 2015 CNN features (image_features_<Cat>.b)",
        "file": str(Path(b_file).resolve()),
        "file_bytes": Path(b_file).stat().st_size,
        "normalize": normalize,
        **stats,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return finish(root, name, matrix, found, fill, entry)
