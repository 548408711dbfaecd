"""kNN graphs at scale: multi-GPU planning (tested on CPU with FAISS's own shard/replica containers), the
blockwise IVF path with its recall check, the progress bar and bounded memory (no N x N allocation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import faiss
import numpy as np
import pytest

from mmprep.dataset import load_dataset
from mmprep.errors import PrepError
from mmprep.graph import knn as knn_mod
from mmprep.graph.knn import GpuPlan, index_to_gpus, knn_graph, plan_gpus, recall_at_k, sample_recall
from tests.mmprep.graph.test_knn import _dataset_with_features
from tests.mmprep.oneline import one_line_error, run_cli

ROOT = Path(__file__).resolve().parents[3]


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Gaussian mixture with about sqrt(n) centres, like the benchmark's synthetic vectors."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((int(np.sqrt(n)), d)).astype(np.float32)
    return centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, d)).astype(np.float32)


def fake_gpu_faiss(count: int, calls: list | None = None) -> SimpleNamespace:
    """A stand-in for a faiss-gpu module seeing ``count`` GPUs; ``index_cpu_to_all_gpus`` builds FAISS's CPU
    ``IndexShards`` / ``IndexReplicas`` (the containers the GPU cloner uses), so search results are real."""
    calls = calls if calls is not None else []

    def vectors(index):
        if isinstance(index, faiss.IndexIVF):
            index.make_direct_map()
        return index.reconstruct_n(0, index.ntotal)

    def to_all(index, co=None, ngpu=-1):
        calls.append(("all", co.shard, ngpu))
        if co.shard:
            container = faiss.IndexShards(index.d, False, True)
            xb = vectors(index)
            for part in np.array_split(np.arange(index.ntotal), ngpu):
                shard = faiss.clone_index(index)
                shard.reset()
                shard.add(xb[part])
                container.add_shard(shard)
                calls.append(("shard", shard))  # the container does not own its shards: keep them alive
        else:
            container = faiss.IndexReplicas(index.d, False)
            for _ in range(ngpu):
                replica = faiss.clone_index(index)
                container.add_replica(replica)
                calls.append(("replica", replica))
        return container

    def to_one(res, device, index):
        calls.append(("one", device))
        return faiss.clone_index(index)

    module = SimpleNamespace(
        **{name: getattr(faiss, name) for name in dir(faiss) if not name.startswith("_")}
    )
    module.StandardGpuResources = lambda: "resources"
    module.GpuMultipleClonerOptions = lambda: SimpleNamespace(shard=False)
    module.get_num_gpus = lambda: count
    module.index_cpu_to_all_gpus = to_all
    module.index_cpu_to_gpu = to_one
    return module


def test_plan_gpus_decides_count_and_layout():
    four = fake_gpu_faiss(4)
    assert plan_gpus(four, "all", 10 << 30) == GpuPlan(4, "replicate")
    assert plan_gpus(four, "ALL", 10 << 30, gpu_memory=80 << 30) == GpuPlan(4, "replicate")
    assert plan_gpus(four, "all", 50 << 30, gpu_memory=80 << 30) == GpuPlan(4, "shard")
    assert plan_gpus(four, "2", 1, layout="shard") == GpuPlan(2, "shard")
    assert plan_gpus(four, 1, 50 << 30, gpu_memory=1) == GpuPlan(1, "single")
    with pytest.raises(PrepError, match="FAISS sees 4 GPU"):
        plan_gpus(four, "5", 1)
    with pytest.raises(PrepError, match="'all' or a number"):
        plan_gpus(four, "many", 1)
    with pytest.raises(PrepError, match="unknown GPU layout"):
        plan_gpus(four, "all", 1, layout="mirror")
    with pytest.raises(PrepError, match="sees no GPU"):
        plan_gpus(fake_gpu_faiss(0), "all", 1)
    with pytest.raises(PrepError, match="needs a FAISS GPU build"):
        plan_gpus(faiss, "all", 1)  # the installed faiss-cpu
    with pytest.raises(PrepError, match="needs a FAISS GPU build"):
        plan_gpus(None, "all", 1)


def test_index_to_gpus_calls_the_faiss_cloners():
    calls: list = []
    fake = fake_gpu_faiss(2, calls)
    flat = faiss.IndexFlatIP(8)
    flat.add(np.eye(8, dtype=np.float32))
    index_to_gpus(fake, flat, GpuPlan(1, "single"))
    index_to_gpus(fake, flat, GpuPlan(2, "shard"))
    index_to_gpus(fake, flat, GpuPlan(2, "replicate"))
    assert [c for c in calls if c[0] in ("one", "all")] == [("one", 0), ("all", True, 2), ("all", False, 2)]


@pytest.mark.parametrize("index", ["exact", "ivf"])
@pytest.mark.parametrize("layout", ["shard", "replicate"])
def test_multi_gpu_layouts_give_the_one_device_graph(monkeypatch, index, layout):
    x = clustered(3000, 32, seed=3)
    params = {"nlist": 32, "nprobe": 4, "gpu_layout": layout}
    ref_idx, ref_scores = knn_graph(x, 10, index=index, device="cpu", params=params, block_size=700)
    fake = fake_gpu_faiss(3)  # one module for the whole test: it keeps the shard indexes alive
    monkeypatch.setattr(knn_mod, "_faiss", lambda: fake)
    monkeypatch.setattr(knn_mod, "torch_cuda_available", lambda: False)
    info = knn_mod.SearchInfo(backend="", index=index)
    idx, scores = knn_graph(
        x, 10, index=index, device="auto", params=params, block_size=700, gpus="all", info=info
    )
    assert info.backend == "faiss-gpu" and info.params["gpus"] == 3 and info.params["gpu_layout"] == layout
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(scores, ref_scores)


def test_gpus_without_a_gpu_build_is_a_one_line_error(tmp_path):
    rng = np.random.default_rng(2)
    root = _dataset_with_features(tmp_path / "d", {"image": rng.standard_normal((60, 8)).astype(np.float32)})
    line = one_line_error(run_cli("graph", root, "--modality", "image", "--gpus", "all"), "--gpus all")
    assert "FAISS GPU build" in line
    one_line_error(
        run_cli("graph", root, "--modality", "image", "--device", "cpu", "--gpus", "2"), "--device cuda"
    )
    # without --gpus the same dataset builds on the CPU (the fallback of --device auto)
    result = run_cli("graph", root, "--modality", "image", "--k", "3")
    assert result.exit_code == 0, result.output
    entry = load_dataset(root).manifest["graphs"]["graphs/knn_image_k3.parquet"]
    assert entry["backend"] == "faiss-cpu" and entry["rows"] == 180
    assert "knn image:" in result.stderr and "/60 [" in result.stderr  # the progress bar, on stderr
    assert not (root / "graphs" / "knn_image_k10.parquet").exists()


def test_blockwise_ivf_build_recall_and_bounded_memory():
    n, d, k = 20_000, 64, 10
    x = clustered(n, d)
    blocks: list[int] = []
    info = knn_mod.SearchInfo(backend="", index="ivf")
    tracemalloc.start()
    try:
        idx, scores = knn_graph(
            x,
            k,
            index="ivf",
            device="cpu",
            block_size=1024,
            params={"nlist": 128, "nprobe": 8, "niter": 10},
            progress=blocks.append,
            info=info,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert blocks == [1024] * 19 + [n - 19 * 1024]
    assert info.params == {"nlist": 128, "nprobe": 8, "train_size": 5120, "niter": 10}
    # numpy allocations of the whole build (normalised copy, candidate windows, re-scoring) stay far below N x N
    assert peak < 64 << 20 < n * n * 4
    assert idx.shape == (n, k) and not (idx == np.arange(n)[:, None]).any()
    recall, size = sample_recall(x, idx, sample=1000, seed=0)
    # the same sample checked independently: float64 brute force over all items, row by row block
    rows = np.sort(np.random.default_rng(0).choice(n, 1000, replace=False))
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    exact = []
    for part in np.array_split(rows, 10):
        sims = xn[part] @ xn.T
        sims[np.arange(len(part)), part] = -np.inf
        exact.append(np.argsort(-sims, axis=1, kind="stable")[:, :k])
    assert size == 1000
    assert recall == pytest.approx(recall_at_k(idx[rows], np.concatenate(exact)), abs=2e-3)
    assert 0.95 <= recall <= 1.0


def test_benchmark_scale_mode_shows_progress_and_writes_recall(tmp_path):
    out = tmp_path / "knn-20k.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "knn.py"), "--scale", "20k", "--scale-dim", "32"]
    cmd += ["--nlist", "64", "--nprobe", "4", "--recall-sample", "300", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "ivf 20,000 x 32" in proc.stderr and "20000/20000" in proc.stderr and "item/s" in proc.stderr
    result = json.loads(out.read_text())["result"]
    assert result["n"] == 20_000 and result["d"] == 32 and result["recall_sample"] == 300
    assert result["index_params"]["nlist"] == 64 and 0.9 <= result["recall_at_k"] <= 1.0
    # recorded, not compared: Linux carries a parent's peak RSS into a forked child (ru_maxrss survives exec), so
    # the child's figure depends on the test process; bounded memory is checked with tracemalloc above
    assert result["peak_rss_mib"] > 0 and result["nxn_mib"] > 1000
