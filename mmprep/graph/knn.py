"""Item-item kNN graphs: cosine similarity, top-k per item, self excluded, ties broken by lower index.

One function, :func:`knn_graph`, builds every graph ``mmprep graph`` stores. mmtrain does not import it; its
fallback (``mmtrain.graph.knn``, used when no stored graph fits) follows the same tie rule. Candidates come
from a search backend: FAISS (exact ``IndexFlatIP`` searched in query blocks, or approximate IVF/HNSW; on the
GPU with faiss-gpu), torch matrix products on a CUDA GPU when faiss-gpu is absent, or NumPy when FAISS is not
installed. Every candidate is then re-scored in float64 and rounded to float32, so a
score depends only on the two vectors (identical vectors give identical scores whatever path found them) and
the final order ``(-score, neighbor_idx)`` is deterministic. Rows whose k-th score ties with the edge of the
candidate window are searched again with a wider window until the tie is settled.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmprep.errors import PrepError

log = logging.getLogger(__name__)

INDEX_TYPES = ("exact", "ivf", "hnsw")
_GPU_MAX_K = 2048  # FAISS GPU indexes return at most this many neighbours per query
_RESCORE_BUDGET = 1 << 24  # float64 elements gathered at once when re-scoring (128 MiB)
_ADD_BLOCK = 65536  # vectors added to an index at once


@dataclass
class SearchInfo:
    """What :func:`knn_graph` did: the backend, index parameters and how many rows needed a wider window."""

    backend: str
    index: str
    params: dict[str, Any] = field(default_factory=dict)
    widened_rows: int = 0
    zero_rows: int = 0


def l2_normalize(x: np.ndarray, block: int = 65536) -> np.ndarray:
    """Row-wise L2 normalisation computed in float64 and returned as float32; zero rows stay zero."""
    x = np.asarray(x)
    out = np.empty(x.shape, dtype=np.float32)
    for s in range(0, x.shape[0], block):
        b = x[s : s + block].astype(np.float64)
        norm = np.sqrt(np.einsum("ij,ij->i", b, b))
        norm[norm == 0] = 1.0
        out[s : s + block] = b / norm[:, None]
    return out


Rescorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _numpy_rescorer(xb: np.ndarray) -> Rescorer:
    """float32(float64 dot(xb[row], xb[cand])) for every candidate, gathered in bounded blocks."""

    def rescore(rows: np.ndarray, cand: np.ndarray) -> np.ndarray:
        n_rows, width = cand.shape
        out = np.empty((n_rows, width), dtype=np.float32)
        step = max(1, _RESCORE_BUDGET // max(1, width * xb.shape[1]))
        for s in range(0, n_rows, step):
            q = xb[rows[s : s + step]].astype(np.float64)
            g = xb[cand[s : s + step]].astype(np.float64)
            out[s : s + step] = np.einsum("bd,bwd->bw", q, g)
        return out

    return rescore


def _torch_rescorer(xt) -> Rescorer:
    """The same float64 re-scoring with torch on the device holding ``xt`` (the GPU copy of the vectors)."""
    import torch

    def rescore(rows: np.ndarray, cand: np.ndarray) -> np.ndarray:
        n_rows, width = cand.shape
        out = np.empty((n_rows, width), dtype=np.float32)
        step = max(1, _RESCORE_BUDGET // max(1, width * xt.shape[1]))
        for s in range(0, n_rows, step):
            r = torch.from_numpy(np.ascontiguousarray(rows[s : s + step])).to(xt.device)
            c = torch.from_numpy(np.ascontiguousarray(cand[s : s + step])).to(xt.device)
            q = xt[r].double()
            g = xt[c].double()
            out[s : s + step] = torch.einsum("bd,bwd->bw", q, g).float().cpu().numpy()
        return out

    return rescore


def _tolerance(xb: np.ndarray) -> float:
    """Bound on the float32 search error of one score: a k-th score this close to the window edge is re-checked."""
    return 1e-4 * max(1.0, float(np.max(np.einsum("ij,ij->i", xb, xb))))


def _select(
    n: int,
    rescore: Rescorer,
    rows: np.ndarray,
    cand: np.ndarray,
    k: int,
    exclude_self: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of a candidate window by (-exact score, index); invalid or self entries sort last."""
    valid = cand >= 0
    if exclude_self:
        valid &= cand != rows[:, None]
    safe = np.where(valid, cand, 0)
    scores = np.where(valid, rescore(rows, safe), np.float32(-np.inf))
    keys = np.where(valid, safe, n)
    order = np.lexsort((keys, -scores), axis=-1)[:, :k]
    return np.take_along_axis(keys, order, 1), np.take_along_axis(scores, order, 1)


class _Searcher:
    """``search(queries, width) -> (scores, labels)`` over one index; a wide search may use a fallback.

    ``rescore(rows, candidates)`` gives the exact float64-rounded scores of candidate pairs.
    """

    def __init__(
        self,
        search: Callable,
        max_width: int,
        rescore: Rescorer,
        fallback: Callable | None = None,
    ):
        self._search = search
        self.max_width = max_width
        self.rescore = rescore
        self._fallback = fallback
        self.resources: Any = None

    def __call__(self, q: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        if width > self.max_width and self._fallback is not None:
            return self._fallback(q, width)
        return self._search(q, width)


def _numpy_search(xb: np.ndarray) -> Callable:
    """Exact inner-product search with NumPy matrix products in bounded query blocks."""

    def search(q: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        n = xb.shape[0]
        width = min(width, n)
        step = max(1, (1 << 25) // max(1, n))
        scores = np.empty((len(q), width), dtype=np.float32)
        labels = np.empty((len(q), width), dtype=np.int64)
        for s in range(0, len(q), step):
            sims = q[s : s + step] @ xb.T
            part = (
                np.argpartition(-sims, width - 1, axis=1)[:, :width]
                if width < n
                else np.indices(sims.shape)[1]
            )
            vals = np.take_along_axis(sims, part, 1)
            order = np.argsort(-vals, axis=1, kind="stable")
            scores[s : s + step] = np.take_along_axis(vals, order, 1)
            labels[s : s + step] = np.take_along_axis(part, order, 1)
        return scores, labels

    return search


def _torch_search(xt, block_elements: int = 1 << 28) -> Callable:
    """Exact inner-product search with torch matrix products (full float32, no TF32) on ``xt``'s device."""
    import torch

    def search(q: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        n = xt.shape[0]
        width = min(width, n)
        step = max(1, block_elements // max(1, n))
        scores = np.empty((len(q), width), dtype=np.float32)
        labels = np.empty((len(q), width), dtype=np.int64)
        before = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        try:
            with torch.inference_mode():
                qt = torch.from_numpy(np.ascontiguousarray(q)).to(xt.device)
                for s in range(0, len(q), step):
                    val, idx = torch.topk(qt[s : s + step] @ xt.T, width, dim=1)
                    scores[s : s + step] = val.cpu().numpy()
                    labels[s : s + step] = idx.cpu().numpy()
        finally:
            torch.set_float32_matmul_precision(before)
        return scores, labels

    return search


def torch_cuda_available() -> bool:
    """True when torch sees a CUDA GPU."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def gpu_available() -> bool:
    """True when FAISS was built with GPU support and sees a GPU."""
    faiss = _faiss()
    return bool(faiss is not None and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0)


GPU_LAYOUTS = ("auto", "replicate", "shard")
_REPLICA_FRACTION = 0.5  # ``auto`` replicates an index that takes at most this share of one GPU's memory


@dataclass(frozen=True)
class GpuPlan:
    """How a FAISS index is put on GPUs: ``single`` (one GPU), ``replicate`` (a full copy per GPU, queries
    split between them) or ``shard`` (the vectors split between GPUs, results merged)."""

    gpus: int
    layout: str


def plan_gpus(
    faiss: Any,
    gpus: str | int,
    index_bytes: int,
    layout: str = "auto",
    gpu_memory: int | None = None,
) -> GpuPlan:
    """Decide how many GPUs and which layout ``--gpus`` asks for; ``faiss`` is the module (a stand-in in tests).

    ``gpus`` is ``all`` or a count. ``auto`` replicates when the index fits in half of one GPU's memory
    (``gpu_memory`` bytes; unknown counts as fitting) and shards it otherwise. Every layout returns the same graph:
    sharded results are merged exactly and every candidate is re-scored and ordered afterwards.
    """
    if faiss is None or not hasattr(faiss, "StandardGpuResources"):
        raise PrepError(
            f"--gpus {gpus} needs a FAISS GPU build (pip install 'modalrec[gpu]'); this FAISS is CPU-only"
        )
    have = int(faiss.get_num_gpus())
    if have < 1:
        raise PrepError(f"--gpus {gpus}: FAISS sees no GPU")
    if str(gpus).lower() == "all":
        want = have
    else:
        try:
            want = int(gpus)
        except ValueError:
            raise PrepError(f"--gpus wants 'all' or a number of GPUs, got {gpus!r}") from None
        if not 1 <= want <= have:
            raise PrepError(f"--gpus {want}: FAISS sees {have} GPU(s)")
    if layout not in GPU_LAYOUTS:
        raise PrepError(f"unknown GPU layout {layout!r} (choose from {', '.join(GPU_LAYOUTS)})")
    if want == 1:
        return GpuPlan(1, "single")
    if layout == "auto":
        fits = gpu_memory is None or index_bytes <= _REPLICA_FRACTION * gpu_memory
        layout = "replicate" if fits else "shard"
    return GpuPlan(want, layout)


def index_to_gpus(faiss: Any, cpu_index: Any, plan: GpuPlan) -> tuple[Any, Any]:
    """Copy ``cpu_index`` to the GPUs of ``plan`` (``index_cpu_to_gpu`` or ``index_cpu_to_all_gpus``).

    Returns ``(gpu_index, resources)``; keep the resources alive as long as the index.
    """
    if plan.layout == "single":
        res = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(res, 0, cpu_index), res
    options = faiss.GpuMultipleClonerOptions()
    options.shard = plan.layout == "shard"
    return faiss.index_cpu_to_all_gpus(cpu_index, co=options, ngpu=plan.gpus), None


def check_gpu_request(device: str, index: str, gpus: str | int | None, layout: str = "auto") -> None:
    """Refuse an impossible ``--device``/``--gpus`` combination before any work starts (one-line error)."""
    if gpus is None:
        return
    _wants_gpu(device, index, gpus)
    if index == "hnsw":
        raise PrepError("--index hnsw has no FAISS GPU version; use --device cpu or --index ivf")
    plan_gpus(_faiss(), gpus, 0, layout)


def _gpu_memory() -> int | None:
    """Total memory of GPU 0 in bytes, when torch can tell."""
    if not torch_cuda_available():
        return None
    import torch

    return int(torch.cuda.get_device_properties(0).total_memory)


def _wants_gpu(device: str, index: str, gpus: str | int | None = None) -> bool:
    """Whether to search on the GPU: ``cuda`` always, ``auto`` when a GPU backend exists for this index
    or ``--gpus`` asks for one."""
    if device == "cpu":
        if gpus is not None:
            raise PrepError(f"--gpus {gpus} needs --device cuda or auto, not cpu")
        return False
    if device == "cuda":
        return True
    if device != "auto":
        raise PrepError(f"unknown device {device!r} (choose cpu, cuda or auto)")
    if gpus is not None:
        return True
    if index == "hnsw":
        return False
    return gpu_available() or (index == "exact" and torch_cuda_available())


def _gpu_tensor(xb: np.ndarray):
    import torch

    return torch.from_numpy(xb).to("cuda")


def _build_index(
    xb: np.ndarray,
    index: str,
    device: str,
    params: dict[str, Any],
    info: SearchInfo,
    gpus: str | int | None = None,
) -> _Searcher:
    """Build the candidate search: FAISS on CPU or GPU(s), torch on a CUDA GPU, or NumPy without FAISS."""
    faiss = _faiss()
    n, d = xb.shape
    if index not in INDEX_TYPES:
        raise PrepError(f"unknown index type {index!r} (choose from {', '.join(INDEX_TYPES)})")
    use_gpu = _wants_gpu(device, index, gpus)
    if use_gpu and index == "hnsw":
        raise PrepError("--index hnsw has no FAISS GPU version; use --device cpu or --index ivf")
    plan = None
    if gpus is not None:
        layout = str(params.get("gpu_layout") or "auto")
        plan = plan_gpus(faiss, gpus, xb.nbytes, layout, _gpu_memory())
    if use_gpu and not gpu_available():
        if index != "exact":
            raise PrepError(f"--index {index} on the GPU needs faiss-gpu (pip install faiss-gpu-cu12)")
        if not torch_cuda_available():
            raise PrepError("--device cuda: neither FAISS nor torch sees a CUDA GPU")
        xt = _gpu_tensor(xb)
        info.backend = "torch-cuda"
        return _Searcher(_torch_search(xt), n, _torch_rescorer(xt))
    if faiss is None:
        if index != "exact":
            raise PrepError(f"--index {index} needs FAISS (pip install faiss-cpu or faiss-gpu-cu12)")
        info.backend = "numpy"
        return _Searcher(_numpy_search(xb), n, _numpy_rescorer(xb))
    metric = faiss.METRIC_INNER_PRODUCT
    if index == "exact":
        cpu = faiss.IndexFlatIP(d)
    elif index == "ivf":
        nlist = params.get("nlist") or max(1, min(int(4 * math.sqrt(n)), n // 39 or 1))
        nprobe = params.get("nprobe") or max(1, min(nlist, max(16, nlist // 8)))
        cpu = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, metric)
        cpu.cp.seed = int(params.get("seed", 0))
        if params.get("niter"):
            cpu.cp.niter = int(params["niter"])
        rng = np.random.default_rng(params.get("seed", 0))
        n_train = min(n, nlist * int(params.get("train_per_list", 40)))
        sample = np.sort(rng.choice(n, n_train, replace=False))
        log.info(
            "ivf: training %d lists on %d vectors (k-means, %d iterations)", nlist, n_train, cpu.cp.niter
        )
        cpu.train(xb[sample])
        cpu.nprobe = nprobe
        info.params.update(nlist=nlist, nprobe=nprobe, train_size=int(n_train), niter=int(cpu.cp.niter))
    else:
        m = int(params.get("hnsw_m") or 32)
        cpu = faiss.IndexHNSWFlat(d, m, metric)
        cpu.hnsw.efConstruction = int(params.get("ef_construction") or 200)
        info.params.update(hnsw_m=m, ef_construction=cpu.hnsw.efConstruction)
    log.info("%s: adding %d vectors", index, n)
    step = n if index == "hnsw" else _ADD_BLOCK  # flat/IVF in blocks: FAISS's assignment buffers stay bounded
    for s in range(0, n, step):
        cpu.add(xb[s : s + step])
    ef = int(params.get("ef_search") or 128)
    if index == "hnsw":
        info.params["ef_search"] = ef

    def cpu_search(q: np.ndarray, width: int):
        if index == "hnsw":
            cpu.hnsw.efSearch = max(ef, width)
        return cpu.search(q, width)

    if use_gpu:
        gpu, res = index_to_gpus(faiss, cpu, plan or GpuPlan(1, "single"))
        info.backend = "faiss-gpu"
        if plan is not None:
            info.params.update(gpus=plan.gpus, gpu_layout=plan.layout)
        rescore = _torch_rescorer(_gpu_tensor(xb)) if torch_cuda_available() else _numpy_rescorer(xb)
        searcher = _Searcher(gpu.search, _GPU_MAX_K, rescore, cpu_search)
        searcher.resources = res  # the GPU memory the index lives in must outlive it
        return searcher
    info.backend = "faiss-cpu"
    return _Searcher(cpu_search, n, _numpy_rescorer(xb))


def _search_rows(
    xb: np.ndarray,
    rows: np.ndarray,
    searcher: _Searcher,
    k: int,
    exclude_self: bool,
    width: int,
    tol: float,
    info: SearchInfo,
    out_idx: np.ndarray,
    out_score: np.ndarray,
) -> None:
    """Search ``rows``, widening the candidate window of rows whose k-th score may tie with unseen items."""
    n = xb.shape[0]
    first = width
    zero = ~np.any(xb[rows] != 0, axis=1)
    dead = rows[zero]
    if len(dead):
        # a zero vector scores 0 with every item: its neighbours are the lowest indices
        extra = int(exclude_self)
        cand = np.ascontiguousarray(np.broadcast_to(np.arange(k + extra), (len(dead), k + extra)))
        out_idx[dead] = _select(n, searcher.rescore, dead, cand, k, exclude_self)[0]
        out_score[dead] = 0.0
        info.zero_rows += len(dead)
    todo = rows[~zero]
    while len(todo):
        scores, labels = searcher(xb[todo], width)
        idx, sc = _select(n, searcher.rescore, todo, labels, k, exclude_self)
        out_idx[todo], out_score[todo] = idx, sc
        if width >= n:
            short = todo[np.isneginf(sc[:, -1])]
            if len(short):  # an approximate index returned fewer than k items: exact search for those rows
                exact = _Searcher(_numpy_search(xb), n, searcher.rescore)
                _search_rows(xb, short, exact, k, exclude_self, first, tol, info, out_idx, out_score)
            return
        unsure = ((labels[:, -1] >= 0) & (sc[:, -1] <= scores[:, -1] + tol)) | np.isneginf(sc[:, -1])
        todo = todo[unsure]
        if width == first:
            info.widened_rows += len(todo)
        width = min(n, width * 2)


def knn_graph(
    features: np.ndarray,
    k: int = 10,
    *,
    index: str = "exact",
    exclude_self: bool = True,
    normalize: bool = True,
    block_size: int = 4096,
    device: str = "auto",
    pad: int = 16,
    params: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    info: SearchInfo | None = None,
    gpus: str | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` neighbours of every row by cosine similarity: ``(indices int32 [N,k], scores float32 [N,k])``.

    ``normalize=False`` takes the rows as they are (inner product), e.g. for fused features that are already
    weighted. Self is excluded unless ``exclude_self=False``. Equal scores order by lower neighbour index.
    ``index`` is ``exact`` (default), ``ivf`` or ``hnsw`` (``params``: nlist, nprobe, hnsw_m, ef_search,
    ef_construction, seed, niter, train_per_list, gpu_layout). ``device`` ``auto`` searches on the GPU when there
    is one (a FAISS GPU index with faiss-gpu, else torch for exact search; HNSW stays on the CPU), ``cuda``
    insists, ``cpu`` never does. ``gpus`` (``all`` or a count) spreads the FAISS index over several GPUs,
    replicated or sharded (:func:`plan_gpus`); the graph is the same as on one GPU. Queries are searched in
    blocks of ``block_size`` rows, so memory stays O(N d + block_size * N) at most, never N x N.
    """
    x = np.asarray(features)
    if x.ndim != 2:
        raise PrepError(f"features must be a 2-d matrix, got shape {x.shape}")
    n, d = x.shape
    extra = 1 if exclude_self else 0
    if k < 1 or k + extra > n:
        raise PrepError(f"k={k} needs at least {k + extra} items, the features have {n}")
    if index not in INDEX_TYPES:
        raise PrepError(f"unknown index type {index!r} (choose from {', '.join(INDEX_TYPES)})")
    xb = l2_normalize(x) if normalize else np.ascontiguousarray(x, dtype=np.float32)
    info = info if info is not None else SearchInfo(backend="", index=index)
    info.index = index
    searcher = _build_index(xb, index, device, dict(params or {}), info, gpus)
    tol = _tolerance(xb)
    out_idx = np.empty((n, k), dtype=np.int32)
    out_score = np.empty((n, k), dtype=np.float32)
    width0 = min(n, k + extra + pad)
    for start in range(0, n, block_size):
        rows = np.arange(start, min(n, start + block_size))
        _search_rows(xb, rows, searcher, k, exclude_self, width0, tol, info, out_idx, out_score)
        if progress is not None:
            progress(len(rows))
    return out_idx, out_score


def exact_rows(
    features: np.ndarray, rows: np.ndarray, k: int, *, exclude_self: bool = True, normalize: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of selected rows by NumPy search (reference for recall; bounded memory)."""
    xb = l2_normalize(features) if normalize else np.ascontiguousarray(features, dtype=np.float32)
    rows = np.asarray(rows, dtype=np.int64)
    n = xb.shape[0]
    out_idx = np.empty((n, k), dtype=np.int32)
    out_score = np.empty((n, k), dtype=np.float32)
    info = SearchInfo(backend="numpy", index="exact")
    searcher = _Searcher(_numpy_search(xb), n, _numpy_rescorer(xb))
    width = min(n, k + int(exclude_self) + 16)
    _search_rows(xb, rows, searcher, k, exclude_self, width, _tolerance(xb), info, out_idx, out_score)
    return out_idx[rows], out_score[rows]


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact neighbours (per row, as sets) that the approximate graph found."""
    if approx.shape != exact.shape or approx.size == 0:
        raise ValueError(f"shapes differ: {approx.shape} vs {exact.shape}")
    hits = (approx[:, :, None] == exact[:, None, :]).any(axis=2).sum()
    return float(hits) / exact.size


def sample_recall(
    features: np.ndarray,
    indices: np.ndarray,
    *,
    sample: int = 1000,
    seed: int = 0,
    exclude_self: bool = True,
    normalize: bool = True,
) -> tuple[float, int]:
    """recall@k of ``indices`` against exact search on a seeded sample of rows; returns (recall, sample size)."""
    n, k = indices.shape
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, min(sample, n), replace=False))
    exact, _ = exact_rows(features, rows, k, exclude_self=exclude_self, normalize=normalize)
    return recall_at_k(indices[rows], exact), len(rows)
