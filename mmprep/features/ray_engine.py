"""``mmprep features --engine ray``: the same chunked, resumable extraction, spread over a Ray cluster.

The driver (the ``mmprep features`` process) plans the work exactly as the local engine does (the same item
order, chunks and batches, :func:`mmprep.features.chunked.pending_batches`) and hands it to Ray Data:

- item text is built in CPU tasks (``map_batches`` with a function over blocks of ``items.parquet`` rows);
- images are decoded and preprocessed in CPU tasks, one task per encoder batch;
- encoding runs on a pool of model actors (``map_batches`` with a callable class and ``concurrency=workers``),
  each holding one copy of the model, on ``gpus_per_worker`` GPUs or on the CPU;
- the driver receives the encoded batches, writes each finished chunk in the local engine's format (so a killed
  run resumes from its finished chunks, with either engine) and assembles the matrix.

Every actor encodes the very batches the local engine would, with the same model and seed, so the output is
byte-identical to ``--engine local`` on the same device and precision. Ray is imported only inside these
functions: ``pip install 'modalrec[ray]'`` is needed for this engine only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mmprep.errors import PrepError
from mmprep.features.chunked import ChunkStore, pending_work
from mmprep.features.text import build_texts, default_fields

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
INSTALL = "pip install 'modalrec[ray]'"
TEXT_BLOCK_ROWS = 50_000
DOWNLOAD_BLOCK = 256


@dataclass
class RayOptions:
    """Where and how wide the Ray engine runs."""

    address: str | None = None
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0

    def device(self, requested: str) -> str:
        """The actors' device: ``cuda`` when each actor has a GPU share, else ``cpu`` (``auto`` follows that)."""
        want = "cuda" if self.gpus_per_worker > 0 else "cpu"
        if requested not in ("auto", want):
            if want == "cpu":
                raise PrepError("--engine ray --device cuda needs --gpus-per-worker > 0")
            raise PrepError(
                f"--gpus-per-worker {self.gpus_per_worker:g} gives each actor a GPU: use --device cuda or auto"
            )
        return want


def require_ray() -> None:
    """One line naming the extra when Ray is not installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise PrepError(f"--engine ray: Ray is not installed ({INSTALL})") from None


@contextmanager
def session(opts: RayOptions) -> Iterator[None]:
    """Join the cluster at ``opts.address`` (``auto``, ``HOST:PORT``) or start a local Ray (``None``); a Ray
    already initialised in this process is used as it is. Ray started here is shut down on the way out."""
    require_ray()
    import ray

    if opts.workers < 1 or opts.gpus_per_worker < 0 or opts.cpus_per_worker <= 0:
        raise PrepError("--workers must be >= 1 and --gpus-per-worker >= 0")
    started = not ray.is_initialized()
    if started:
        try:  # "local": a fresh local Ray, not a cluster that `ray start` left running on this machine
            ray.init(
                address=opts.address or "local",
                include_dashboard=False,
                configure_logging=False,
                log_to_driver=True,
            )
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise PrepError(
                f"--address {opts.address}: cannot connect to Ray ({str(e).splitlines()[0]})"
            ) from None
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the driver draws one bar over items, as the local engine does
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled"
        logging.getLogger("ray.data._internal.execution.streaming_executor").setLevel(logging.WARNING)
        yield
    finally:
        if started:
            ray.shutdown()


def check_resources(opts: RayOptions, decode_tasks: bool) -> None:
    """The encoder actors (plus one CPU for an image decoding task) must fit in the cluster: a local Ray that
    is too small is a one-line error (it would wait forever), a cluster only a warning (it may autoscale)."""
    import ray

    resources = ray.cluster_resources()
    gpus = opts.workers * opts.gpus_per_worker
    cpus = opts.workers * opts.cpus_per_worker + (1 if decode_tasks else 0)
    have_cpu, have_gpu = resources.get("CPU", 0), resources.get("GPU", 0)
    if gpus > have_gpu or cpus > have_cpu:
        problem = (
            f"{opts.workers} encoder actors{' and an image decoding task' if decode_tasks else ''} need "
            f"{cpus:g} CPU / {gpus:g} GPU but the Ray cluster has {have_cpu:g} CPU / {have_gpu:g} GPU"
        )
        if not opts.address:  # a local Ray never grows
            raise PrepError(f"{problem} (lower --workers or --gpus-per-worker)")
        log.warning("%s: waiting for the cluster to grow", problem)


@dataclass(frozen=True)
class EncoderSpec:
    """What each actor loads: the same encoder, weights and seed as the driver describes in the manifest."""

    kind: str  # "text" or "image"
    family: str  # text: sbert | clip; image: clip | torchvision | timm
    model: str | None
    pretrained: str | None
    device: str
    precision: str
    seed: int

    def build(self):
        """Load the encoder (in an actor)."""
        from mmprep.features.backbones import image_encoder, text_encoder

        make = text_encoder if self.kind == "text" else image_encoder
        return make(self.family, self.model, self.pretrained, self.device, self.precision, self.seed)


class EncoderActor:
    """A Ray Data callable class: one model per actor; each call encodes one planned batch."""

    def __init__(self, spec: EncoderSpec):
        self.spec = spec
        self.encoder = spec.build()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.spec.kind == "text":
            texts = [str(t) for t in batch["text"][0]]
            vectors = self.encoder.encode(texts)
            ok = np.ones(len(texts), dtype=bool)
        else:
            import torch

            ok = np.asarray(batch["ok"][0], dtype=bool)
            vectors = self.encoder.encode(torch.from_numpy(np.ascontiguousarray(batch["pixels"][0])))
            vectors[~ok] = 0.0
        return {"position": batch["position"], "vectors": vectors[None], "ok": ok[None]}


def decode_images(batch: dict[str, np.ndarray], preprocess, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """A Ray Data CPU task: decode and preprocess the images of one planned batch (as the DataLoader workers
    of the local engine do: an unreadable file gives zeros and ok False)."""
    import torch

    from mmprep.features.images import ImageFiles

    paths = [None if p is None or p == "" else str(p) for p in batch["paths"][0]]
    files = ImageFiles(paths, preprocess, shape)
    decoded = [files[i] for i in range(len(files))]
    pixels = torch.stack([t for t, _ in decoded]).numpy()
    ok = np.array([k for _, k in decoded], dtype=bool)
    return {"position": batch["position"], "pixels": pixels[None], "ok": ok[None]}


def _fetch_block(block: dict[str, np.ndarray], retries: int, timeout: float, backoff: float, threads: int):
    """A Ray Data CPU task: download a block of URLs with ``threads`` concurrent requests."""
    from mmprep.features.download import fetch_in_threads

    target = {str(u): Path(str(d)) for u, d in zip(block["url"], block["dest"], strict=True)}
    results = list(fetch_in_threads(list(target), target, retries, timeout, backoff, threads))
    return {
        "url": np.array([r[0] for r in results], dtype=object),
        "ok": np.array([r[1] for r in results], dtype=bool),
        "attempts": np.array([r[2] for r in results], dtype=np.int64),
        "error": np.array([r[3] for r in results], dtype=object),
    }


def fetch_on_ray(
    todo: list[str], target: dict[str, Path], retries: int, timeout: float, backoff: float, workers: int
) -> Iterator[tuple[str, bool, int, str]]:
    """A :data:`~mmprep.features.download.Fetcher` that downloads in Ray CPU tasks (blocks of
    ``DOWNLOAD_BLOCK`` URLs, ``workers`` concurrent requests in each); the cache must be on a filesystem that
    every node shares."""
    import ray

    rows = [{"url": u, "dest": str(target[u])} for u in todo]
    blocks = max(1, -(-len(rows) // DOWNLOAD_BLOCK))
    ds = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        _fetch_block,
        batch_size=None,
        fn_kwargs={"retries": retries, "timeout": timeout, "backoff": backoff, "threads": workers},
    )
    for out in ds.iter_rows():
        yield str(out["url"]), bool(out["ok"]), int(out["attempts"]), str(out["error"] or "")


def _texts_block(block: pa.Table, fields: list[str] | None, template: str | None) -> pa.Table:
    """A Ray Data CPU task: the item text of a block of ``items.parquet`` rows."""
    texts, present, _ = build_texts(block.drop_columns(["_row"]), fields, template)
    return pa.table({"_row": block.column("_row"), "text": texts, "present": pa.array(present)})


def build_texts_on_ray(
    items: pa.Table, fields: Sequence[str] | None, template: str | None
) -> tuple[pa.Array, np.ndarray, list[str]]:
    """:func:`~mmprep.features.text.build_texts` with the cleaning and joining in Ray CPU tasks, one per block
    of rows; the result is the same (every step is row-wise). Which default fields to use is decided here
    first, over all items."""
    import ray

    if template is None:
        fields = list(fields) if fields else default_fields(items)
    _, _, used = build_texts(items.slice(0, 0), fields, template)  # bad fields or template: one line, here
    task_fields = list(fields) if fields else None
    columns = sorted({"categories" if f == "all_categories" else f for f in used})
    table = items.select(columns).append_column("_row", pa.array(np.arange(items.num_rows, dtype=np.int64)))
    blocks = [table.slice(s, TEXT_BLOCK_ROWS) for s in range(0, max(table.num_rows, 1), TEXT_BLOCK_ROWS)]
    ds = ray.data.from_arrow(blocks).map_batches(
        _texts_block,
        batch_size=None,
        batch_format="pyarrow",
        fn_kwargs={"fields": task_fields, "template": template},
    )
    out = pa.concat_tables(ray.get(ds.to_arrow_refs()))
    out = out.take(np.argsort(np.asarray(out.column("_row")), kind="stable"))
    texts = out.column("text").combine_chunks()
    return texts, np.asarray(out.column("present"), dtype=bool), used


def encode_on_ray(
    store: ChunkStore,
    chunks: list[np.ndarray],
    batch_size: int,
    spec: EncoderSpec,
    batch_rows: Callable[[int, np.ndarray], dict[str, Any]],
    opts: RayOptions,
    desc: str,
    normalize: Callable[[np.ndarray], np.ndarray] | None = None,
    decode: dict[str, Any] | None = None,
) -> None:
    """Encode the chunks not yet in ``store`` on a pool of ``opts.workers`` model actors; the driver saves each
    chunk as soon as all of its batches are back.

    ``batch_rows(position, items)`` is the Ray row of one planned batch (``text`` strings, or image ``paths``);
    ``decode`` (images) holds ``preprocess`` and ``shape`` for the CPU decoding tasks.
    """
    import ray

    check_resources(opts, decode_tasks=decode is not None)
    with pending_work(store, chunks, batch_size, desc) as (batches, assembler, bar):
        if not batches:
            return
        rows = [{"position": p, **batch_rows(p, b)} for p, b in enumerate(batches)]
        # about one block per chunk: the unit of work an actor (or a decoding task) takes at a time
        ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), len(set(assembler.owner)))))
        if decode is not None:
            ds = ds.map_batches(decode_images, batch_size=1, fn_kwargs=decode, num_cpus=1)
        ds = ds.map_batches(
            EncoderActor,
            batch_size=1,
            fn_constructor_kwargs={"spec": spec},
            compute=ray.data.ActorPoolStrategy(size=opts.workers),
            num_cpus=opts.cpus_per_worker,
            num_gpus=opts.gpus_per_worker,
            max_restarts=0,  # a lost actor fails the run; its finished chunks are kept for the rerun
        )
        try:
            for out in ds.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=0):
                position = int(out["position"][0])
                vectors = np.asarray(out["vectors"][0], dtype=np.float32)
                if normalize is not None:
                    vectors = normalize(vectors)
                assembler.add(position, vectors, np.asarray(out["ok"][0], dtype=bool))
                bar.update(len(batches[position]))
        except ray.exceptions.RayError as e:
            raise PrepError(
                f"the Ray run failed ({_first_line(e)}); {len(store.done)} of {store.n_chunks} chunks are "
                "saved: run the same command again to resume"
            ) from None


def _first_line(e: BaseException) -> str:
    """One line for a Ray error: the error raised in a task or actor when there is one, else Ray's own."""
    cause = getattr(e, "cause", None)
    source = cause if isinstance(cause, BaseException) else e
    lines = [line.strip() for line in str(source).splitlines() if line.strip()]
    text = lines[0] if lines else type(source).__name__
    return text if isinstance(source, PrepError) else f"{type(source).__name__}: {text}"
