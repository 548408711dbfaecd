"""`mmprep graph`: exact kNN equals brute force, self excluded, ties by index; approximate indexes; fused graph."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from mmprep.commands.graph import graph_cmd
from mmprep.dataset import load_dataset, verify_dataset
from mmprep.dataset.manifest import read_manifest, write_manifest
from mmprep.dataset.writer import write_feature
from mmprep.errors import PrepError
from mmprep.graph import fuse_features, fused_knn_graph, graph_table, knn_graph, read_knn_graph
from mmprep.graph import knn as knn_mod
from mmprep.graph.knn import SearchInfo, recall_at_k, sample_recall
from mmprep.graph.table import GRAPH_SCHEMA
from tests.mmprep.features.helpers import make_dataset


def brute_force(x: np.ndarray, k: int, exclude_self: bool = True, normalize: bool = True):
    """Reference: the full N x N float64 similarity, rounded to float32, sorted by (-score, index)."""
    x64 = x.astype(np.float64)
    if normalize:
        norm = np.linalg.norm(x64, axis=1, keepdims=True)
        x64 = (x64 / np.where(norm == 0, 1, norm)).astype(np.float32).astype(np.float64)
    sims = (x64 @ x64.T).astype(np.float32)
    n = len(x)
    cols = np.broadcast_to(np.arange(n), (n, n))
    key = -sims.astype(np.float64)
    if exclude_self:
        key[np.arange(n), np.arange(n)] = np.inf
    order = np.lexsort((cols, key), axis=1)[:, :k]
    return order.astype(np.int32), np.take_along_axis(sims, order, 1)


def tied_features(n: int = 300, d: int = 4, seed: int = 0) -> np.ndarray:
    """Small-integer vectors: many duplicate rows, so many exactly equal scores."""
    return np.random.default_rng(seed).integers(0, 3, size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("k", [1, 10])
def test_exact_equals_brute_force_on_random_data(k):
    x = np.random.default_rng(1).standard_normal((500, 24)).astype(np.float32)
    idx, scores = knn_graph(x, k, block_size=128, device="cpu")
    ref_idx, ref_scores = brute_force(x, k)
    assert idx.dtype == np.int32 and scores.dtype == np.float32 and idx.shape == (500, k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=1e-6)
    assert not (idx == np.arange(500)[:, None]).any()
    assert (np.diff(scores, axis=1) <= 0).all()


def test_ties_are_broken_by_lower_index_whatever_the_block_or_window():
    x = tied_features()
    ref_idx, ref_scores = brute_force(x, 10)
    # with 300 rows of 4 values in {0,1,2} (81 patterns, minus the zero one) most rows have duplicates
    assert (ref_scores[:, 0] == ref_scores[:, 1]).sum() > 250
    runs = []
    for block, pad in [(7, 0), (64, 16), (300, 200)]:
        info = SearchInfo(backend="", index="exact")
        runs.append(knn_graph(x, 10, block_size=block, pad=pad, device="cpu", info=info))
        if pad == 0:
            assert info.widened_rows > 0  # a tie at the window edge forced a wider search
    for idx, scores in runs:
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(scores, runs[0][1])
    np.testing.assert_allclose(runs[0][1], ref_scores, atol=1e-6)
    # the zero row scores 0 with everything: their neighbours are the lowest other indices
    zero = np.flatnonzero(~x.any(axis=1))
    assert zero.tolist() == [1]
    for z in zero:
        assert runs[0][0][z].tolist() == [j for j in range(12) if j != z][:10]
        assert runs[0][1][z].tolist() == [0.0] * 10


def test_duplicates_of_an_item_come_first_in_index_order():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    x[[3, 17, 40, 41]] = x[29]  # five copies: 3, 17, 29, 40, 41
    x[12] = 2.0 * x[29]  # same direction, so cosine 1 as well
    idx, scores = knn_graph(x, 6, device="cpu")
    copies = [3, 12, 17, 29, 40, 41]
    for i in copies:
        assert idx[i, :5].tolist() == [j for j in copies if j != i]
        assert scores[i, :5].tolist() == [1.0] * 5
    idx_self, scores_self = knn_graph(x, 6, exclude_self=False, device="cpu")
    assert idx_self[29].tolist() == copies and idx_self[0, 0] == 0 and scores_self[0, 0] == 1.0


def test_include_self_matches_brute_force():
    x = tied_features(n=120, d=5, seed=3)
    ref_idx, _ = brute_force(x, 8, exclude_self=False)
    idx, _ = knn_graph(x, 8, exclude_self=False, device="cpu")
    np.testing.assert_array_equal(idx, ref_idx)
    assert (
        idx[:, 0] == np.arange(120)
    ).mean() > 0.3  # self first unless a lower-index duplicate ties with it


@pytest.mark.parametrize("backend", ["numpy", "torch-cuda"])
def test_other_backends_give_the_same_graph(monkeypatch, backend):
    """NumPy (no FAISS installed) and the torch GPU search (run here on CPU tensors) equal brute force."""
    x = np.concatenate([tied_features(n=200, d=6, seed=8), np.random.default_rng(8).random((300, 6))])
    x = x.astype(np.float32)
    ref_idx, ref_scores = brute_force(x, 10)
    if backend == "numpy":
        monkeypatch.setattr(knn_mod, "_faiss", lambda: None)
    else:
        torch = pytest.importorskip("torch")
        monkeypatch.setattr(knn_mod, "gpu_available", lambda: False)
        monkeypatch.setattr(knn_mod, "torch_cuda_available", lambda: True)
        monkeypatch.setattr(knn_mod, "_gpu_tensor", lambda xb: torch.from_numpy(xb))
    info = SearchInfo(backend="", index="exact")
    idx, scores = knn_graph(x, 10, device="cpu" if backend == "numpy" else "auto", block_size=96, info=info)
    assert info.backend == backend
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-6)
    if backend == "numpy":
        with pytest.raises(PrepError, match="needs FAISS"):
            knn_graph(x, 10, index="hnsw", device="cpu")
    else:
        with pytest.raises(PrepError, match="needs faiss-gpu"):
            knn_graph(x, 10, index="ivf", device="cuda")


def test_bad_arguments_are_user_errors():
    x = np.ones((5, 3), dtype=np.float32)
    with pytest.raises(PrepError, match="k=5 needs at least 6 items"):
        knn_graph(x, 5)
    with pytest.raises(PrepError, match="unknown index type"):
        knn_graph(x, 2, index="lsh")
    with pytest.raises(PrepError, match="2-d"):
        knn_graph(np.ones(5, dtype=np.float32), 2)


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_approximate_indexes_report_recall(index):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(2)
    centers = rng.standard_normal((20, 16))
    x = (centers[rng.integers(0, 20, 3000)] + 0.3 * rng.standard_normal((3000, 16))).astype(np.float32)
    exact, _ = knn_graph(x, 10, device="cpu")
    info = SearchInfo(backend="", index=index)
    approx, scores = knn_graph(x, 10, index=index, device="cpu", info=info)
    assert info.backend == "faiss-cpu" and (approx != np.arange(3000)[:, None]).all()
    full = recall_at_k(approx, exact)
    assert 0.9 < full <= 1.0
    recall, size = sample_recall(x, approx, sample=500, seed=0)
    assert size == 500 and abs(recall - full) < 0.05
    assert recall_at_k(exact, exact) == 1.0
    # every returned score is the exact cosine of the pair, sorted
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(scores, np.einsum("id,ikd->ik", xn, xn[approx]), atol=1e-5)


def test_fused_graph_is_top_k_of_weighted_cosines():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((200, 12)).astype(np.float32)
    b = rng.standard_normal((200, 30)).astype(np.float32)
    idx, scores = fused_knn_graph([a, b], [1.0, 3.0], k=7, device="cpu")

    def cos(x):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        return x @ x.T

    fused = 0.25 * cos(a.astype(np.float64)) + 0.75 * cos(b.astype(np.float64))
    np.fill_diagonal(fused, -np.inf)
    ref = np.argsort(-fused, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(scores, np.take_along_axis(fused, ref, 1), atol=1e-5)
    assert fuse_features([a, b], [1, 3]).shape == (200, 42)
    with pytest.raises(PrepError, match="2 fusion weights for 3"):
        fuse_features([a, b, b], [1, 1])
    with pytest.raises(PrepError, match="non-negative"):
        fuse_features([a, b], [1, -1])


def test_graph_table_round_trip():
    idx = np.array([[2, 1], [0, 2], [1, 0]], dtype=np.int32)
    scores = np.array([[0.9, 0.5], [0.8, 0.1], [0.7, 0.7]], dtype=np.float32)
    t = graph_table(idx, scores)
    assert t.schema.equals(GRAPH_SCHEMA) and t.num_rows == 6
    assert t.column("item_idx").to_pylist() == [0, 0, 1, 1, 2, 2]
    assert t.column("rank").to_pylist() == [0, 1, 0, 1, 0, 1]
    assert t.column("neighbor_idx").to_pylist() == [2, 1, 0, 2, 1, 0]


def _dataset_with_features(path, features: dict[str, np.ndarray]):
    n = next(iter(features.values())).shape[0]
    root = make_dataset(path, [f"i{i}" for i in range(n)])
    manifest = read_manifest(root)
    for name, matrix in features.items():
        mask = matrix.any(axis=1)
        write_feature(root, name, matrix, mask)
        manifest["features"][name] = {"dim": matrix.shape[1], "dtype": "float32", "present": int(mask.sum())}
    write_manifest(root, manifest)
    return root


def test_graph_command_writes_parquet_and_manifest(tmp_path):
    rng = np.random.default_rng(6)
    image = rng.standard_normal((150, 16)).astype(np.float32)
    text = rng.standard_normal((150, 8)).astype(np.float32)
    root = _dataset_with_features(tmp_path / "d", {"image": image, "text": text})
    runner = CliRunner()
    args = [str(root), "--modality", "image", "--modality", "text", "--k", "5", "--fuse", "0.1,0.9"]
    result = runner.invoke(graph_cmd, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for name, x in [("image", image), ("text", text)]:
        table = pq.read_table(root / "graphs" / f"knn_{name}_k5.parquet")
        assert table.schema.equals(GRAPH_SCHEMA) and table.num_rows == 750
        idx, scores = read_knn_graph(root / "graphs" / f"knn_{name}_k5.parquet")
        np.testing.assert_array_equal(idx, brute_force(x, 5)[0])
    fused_idx, _ = read_knn_graph(root / "graphs" / "knn_fused_k5.parquet")
    np.testing.assert_array_equal(fused_idx, fused_knn_graph([image, text], [0.1, 0.9], k=5)[0])
    manifest = load_dataset(root).manifest
    entry = manifest["graphs"]["graphs/knn_image_k5.parquet"]
    assert entry["modality"] == "image" and entry["k"] == 5 and entry["metric"] == "cosine"
    assert entry["index"] == "exact" and entry["backend"] == "faiss-cpu" and entry["exclude_self"] is True
    assert entry["rows"] == 750 and entry["present"] == 150
    assert entry["features_sha256"] == next(
        f["sha256"] for f in manifest["files"] if f["path"] == "features/image.npy"
    )
    fused = manifest["graphs"]["graphs/knn_fused_k5.parquet"]
    assert fused["modalities"] == ["image", "text"] and fused["weights"] == {"image": 0.1, "text": 0.9}
    assert verify_dataset(root) == []
    assert {f["path"] for f in manifest["files"]} >= {
        "graphs/knn_image_k5.parquet",
        "graphs/knn_text_k5.parquet",
        "graphs/knn_fused_k5.parquet",
    }
    result = runner.invoke(graph_cmd, [str(root), "--modality", "audio"])
    assert isinstance(result.exception, PrepError) and "no features for audio" in str(result.exception)
    result = runner.invoke(graph_cmd, [str(root), "--modality", "image", "--fuse", "1"])
    assert isinstance(result.exception, PrepError) and "at least two" in str(result.exception)
    result = runner.invoke(graph_cmd, [str(root), "--modality", "image", "--index", "hnsw", "--k", "3"])
    assert result.exit_code == 0, result.output
    entry = load_dataset(root).manifest["graphs"]["graphs/knn_image_k3.parquet"]
    assert entry["index"] == "hnsw" and entry["recall_sample"] == 150 and 0.9 <= entry["recall_at_k"] <= 1
