"""kNN graph build time: exact vs approximate, CPU vs GPU, by catalogue size and dimension; peak memory.

Each configuration runs in its own Python process (so its peak resident memory is its own) on synthetic
clustered vectors (a Gaussian mixture with about sqrt(N) centres, float32, seeded), builds the top-k cosine graph
with :func:`mmprep.graph.knn_graph` (self excluded) and reports wall time, items/s, the backend used, peak RSS and,
for approximate indexes, recall@k against exact search on a sample of items. A configuration that runs past
``--timeout`` is recorded as a timeout; one whose feature matrix exceeds ``--max-gb`` is skipped.

    python benchmarks/knn.py                                   # 10k items, d=512 and 4096, exact/ivf/hnsw
    python benchmarks/knn.py --sizes 10000,100000,1000000 --dims 512,4096 --device cuda --timeout 900
    nice python benchmarks/knn.py --scale 1m    # 1M x 512 IVF build, progress bar, recall@10 -> results/knn-1m.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine_info, sgemm_gflops


def synthetic(n: int, d: int, seed: int = 0, chunk: int = 65536) -> np.ndarray:
    """Clustered float32 vectors: ``round(sqrt(n))`` Gaussian centres plus noise, generated in chunks."""
    rng = np.random.default_rng(seed)
    n_centres = max(1, int(round(np.sqrt(n))))
    centres = rng.standard_normal((n_centres, d), dtype=np.float32)
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        out[s : s + m] = centres[rng.integers(0, n_centres, m)]
        out[s : s + m] += 0.5 * rng.standard_normal((m, d), dtype=np.float32)
    return out


def run_one(n: int, d: int, index: str, k: int, device: str, recall_sample: int, seed: int) -> dict:
    """Build one graph in this process and return its measurements."""
    from mmprep.graph.knn import SearchInfo, knn_graph, sample_recall

    t0 = time.perf_counter()
    x = synthetic(n, d, seed)
    gen_s = time.perf_counter() - t0
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    info = SearchInfo(backend="", index=index)
    gpu_peak = None
    torch = None
    if device != "cpu":  # torch is only imported (about 400 MiB resident) when it may search on the GPU
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    idx, _ = knn_graph(x, k, index=index, device=device, info=info)
    build_s = time.perf_counter() - start
    if torch is not None and torch.cuda.is_available():
        gpu_peak = torch.cuda.max_memory_allocated() / 2**20
    row = {
        "n": n,
        "d": d,
        "index": index,
        "k": k,
        "device": device,
        "backend": info.backend,
        "index_params": info.params,
        "widened_rows": info.widened_rows,
        "build_s": round(build_s, 3),
        "items_per_s": round(n / build_s, 1),
        "generate_s": round(gen_s, 3),
        "features_mib": round(x.nbytes / 2**20, 1),
        "rss_after_data_mib": round(rss_data, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "build_extra_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_data, 1),
        "torch_gpu_peak_mib": None if gpu_peak is None else round(gpu_peak, 1),
    }
    if index != "exact" and recall_sample > 0:
        t1 = time.perf_counter()
        recall, size = sample_recall(x, idx, sample=recall_sample, seed=seed)
        row.update(
            recall_at_k=round(recall, 4), recall_sample=size, recall_s=round(time.perf_counter() - t1, 3)
        )
    return row


def parse_count(text: str) -> int:
    """``1m`` -> 1,000,000, ``20k`` -> 20,000, ``5000`` -> 5,000."""
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def run_scale(args: argparse.Namespace) -> dict:
    """One large IVF build: features generated and L2-normalised in chunks (no second copy), the graph searched
    in query blocks with a progress bar (ETA), then recall@k against exact search on a sample of items."""
    from mmformat.progress import bar
    from mmprep.graph.knn import SearchInfo, knn_graph, l2_normalize, sample_recall

    n, d = parse_count(args.scale), args.scale_dim
    t0 = time.perf_counter()
    x = synthetic(n, d, args.seed)
    for s in range(0, n, 65536):
        x[s : s + 65536] = l2_normalize(x[s : s + 65536])
    gen_s = time.perf_counter() - t0
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    params = {"nlist": args.nlist, "nprobe": args.nprobe, "niter": args.niter, "seed": args.seed}
    info = SearchInfo(backend="", index="ivf")
    start = time.perf_counter()
    with bar(total=n, unit="item", desc=f"ivf {n:,} x {d}") as progress:
        idx, _ = knn_graph(
            x,
            args.k,
            index="ivf",
            normalize=False,
            device=args.device,
            params=params,
            progress=progress.update,
            info=info,
            gpus=args.gpus,
        )
    build_s = time.perf_counter() - start
    rss_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t1 = time.perf_counter()
    recall, size = sample_recall(x, idx, sample=args.recall_sample, seed=args.seed, normalize=False)
    recall_s = time.perf_counter() - t1
    return {
        "n": n,
        "d": d,
        "index": "ivf",
        "k": args.k,
        "device": args.device,
        "backend": info.backend,
        "index_params": info.params,
        "widened_rows": info.widened_rows,
        "generate_s": round(gen_s, 1),
        "build_s": round(build_s, 1),
        "items_per_s": round(n / build_s, 1),
        "wall_s": round(time.perf_counter() - t0, 1),
        "features_mib": round(x.nbytes / 2**20, 1),
        "rss_after_data_mib": round(rss_data, 1),
        "peak_rss_build_mib": round(rss_build, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "nxn_mib": round(n * n * 4 / 2**20, 1),
        "recall_at_k": round(recall, 4),
        "recall_sample": size,
        "recall_s": round(recall_s, 1),
    }


def machine() -> dict:
    """What the numbers were measured on, with an sgemm calibration and the faiss and torch builds."""
    info: dict = {"numpy_sgemm_gflops": sgemm_gflops()}
    try:
        import faiss

        info["faiss"] = faiss.__version__
        info["faiss_gpu"] = hasattr(faiss, "StandardGpuResources")
        info["faiss_threads"] = faiss.omp_get_max_threads()
    except ImportError:
        info["faiss"] = None
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return machine_info(**info)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000", help="comma-separated item counts")
    p.add_argument("--dims", default="512,4096", help="comma-separated dimensions")
    p.add_argument("--indexes", default="exact,ivf,hnsw", help="exact, ivf, hnsw")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--recall-sample", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=600, help="seconds per configuration")
    p.add_argument("--max-gb", type=float, default=8.0, help="skip feature matrices larger than this")
    p.add_argument("--out", type=Path, default=RESULTS / "knn.json")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--scale", default=None, help="one large IVF build instead of the grid, e.g. 1m (or 20k)")
    p.add_argument("--scale-dim", type=int, default=512, help="dimension of the --scale build")
    p.add_argument("--nlist", type=int, default=2048, help="IVF lists of the --scale build")
    p.add_argument("--nprobe", type=int, default=4, help="IVF lists probed per query in the --scale build")
    p.add_argument("--gpus", default=None, help="with --scale and --device cuda: all or N GPUs (faiss-gpu)")
    p.add_argument("--niter", type=int, default=10, help="k-means iterations of the --scale build")
    args = p.parse_args(argv)

    if args.scale:
        out = args.out if args.out != RESULTS / "knn.json" else RESULTS / f"knn-{args.scale.lower()}.json"
        row = run_scale(args)
        print(json.dumps(row, indent=2))
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"machine": machine(), "args": vars(args) | {"out": str(out)}, "result": row}
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(out)
        print(f"wrote {out}")
        return 0

    if args.one:
        n, d, index = args.one.split(",")
        row = run_one(int(n), int(d), index, args.k, args.device, args.recall_sample, args.seed)
        print(json.dumps(row))
        return 0

    rows = []
    header = f"{'n':>9} {'d':>5} {'index':>6} {'backend':>10} {'build s':>9} {'items/s':>10} {'peak MiB':>9} {'+build':>7} {'recall':>7}"
    print(header)
    print("-" * len(header))
    for n in map(int, args.sizes.split(",")):
        for d in map(int, args.dims.split(",")):
            for index in args.indexes.split(","):
                base = {"n": n, "d": d, "index": index, "k": args.k, "device": args.device}
                if n * d * 4 / 2**30 > args.max_gb:
                    row = {**base, "status": f"skipped (features > {args.max_gb} GB)"}
                else:
                    cmd = [sys.executable, __file__, "--one", f"{n},{d},{index}", "--k", str(args.k)]
                    cmd += ["--device", args.device, "--recall-sample", str(args.recall_sample)]
                    cmd += ["--seed", str(args.seed)]
                    try:
                        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                        if proc.returncode == 0:
                            row = {**json.loads(proc.stdout.strip().splitlines()[-1]), "status": "ok"}
                        else:
                            row = {**base, "status": f"failed: {proc.stderr.strip().splitlines()[-1:]}"}
                    except subprocess.TimeoutExpired:
                        row = {**base, "status": f"timeout (> {args.timeout:.0f} s)"}
                rows.append(row)
                if row["status"] == "ok":
                    recall = f"{row['recall_at_k']:.4f}" if "recall_at_k" in row else "exact"
                    print(
                        f"{n:>9} {d:>5} {index:>6} {row['backend']:>10} {row['build_s']:>9.2f} "
                        f"{row['items_per_s']:>10.0f} {row['peak_rss_mib']:>9.0f} {row['build_extra_mib']:>7.0f} {recall:>7}",
                        flush=True,
                    )
                else:
                    print(f"{n:>9} {d:>5} {index:>6} {row['status']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"machine": machine(), "args": vars(args) | {"out": str(args.out)}, "rows": rows}, indent=2
        )
        + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
