"""kNN graphs on real vectors: TikTok's 128-d image features (MMSSL/DiffMM release, ../shared/data/tiktok-mmssl)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from mmprep.commands.graph import graph_cmd
from mmprep.dataset import load_dataset, verify_dataset
from mmprep.dataset.manifest import read_manifest, write_manifest
from mmprep.dataset.writer import write_feature
from mmprep.graph import read_knn_graph
from tests.mmprep.features.helpers import make_dataset
from tests.paths import SHARED_DATA

TIKTOK = SHARED_DATA / "tiktok-mmssl"
N_ITEMS = 6710
DUPLICATES = [(766, 2002), (1893, 2381), (3649, 5059)]  # identical rows in image_feat.npy


@pytest.fixture(scope="module")
def image_feat() -> np.ndarray:
    path = TIKTOK / "image_feat.npy"
    if not path.is_file():
        pytest.skip("../shared/data/tiktok-mmssl is not available")
    x = np.load(path)
    assert x.shape == (N_ITEMS, 128) and x.dtype == np.float16  # as PROVENANCE.md states
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def reference11(image_feat) -> tuple[np.ndarray, np.ndarray]:
    return brute_force_blocked(image_feat, 11)


def brute_force_blocked(x: np.ndarray, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """float64 cosine of every pair (block of rows at a time), top-k by (-score rounded to float32, index)."""
    x64 = x.astype(np.float64)
    xn = (x64 / np.linalg.norm(x64, axis=1, keepdims=True)).astype(np.float32).astype(np.float64)
    n = len(x)
    idx = np.empty((n, k), dtype=np.int32)
    scores = np.empty((n, k), dtype=np.float32)
    for s in range(0, n, block):
        sims = (xn[s : s + block] @ xn.T).astype(np.float32).astype(np.float64)
        rows = np.arange(s, min(n, s + block))
        sims[rows - s, rows] = -np.inf
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]  # stable: equal scores keep index order
        idx[s : s + block] = order
        scores[s : s + block] = np.take_along_axis(sims, order, 1)
    return idx, scores


def test_tiktok_image_graph_equals_brute_force(tmp_path, image_feat, reference11):
    root = make_dataset(tmp_path / "tiktok", [str(i) for i in range(N_ITEMS)], name="tiktok")
    write_feature(root, "image", image_feat, np.ones(N_ITEMS, dtype=bool))
    manifest = read_manifest(root)
    manifest["features"]["image"] = {
        "dim": 128,
        "dtype": "float32",
        "present": N_ITEMS,
        "source": "tiktok-mmssl",
    }
    write_manifest(root, manifest)

    result = CliRunner().invoke(graph_cmd, [str(root), "--modality", "image", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    idx, scores = read_knn_graph(root / "graphs" / "knn_image_k10.parquet")
    assert idx.shape == (N_ITEMS, 10)
    ref_idx, ref_scores = reference11[0][:, :10], reference11[1][:, :10]
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-6)
    assert not (idx == np.arange(N_ITEMS)[:, None]).any()
    for a, b in DUPLICATES:  # an identical item is the nearest neighbour, with cosine 1
        assert idx[a, 0] == b and idx[b, 0] == a and scores[a, 0] == scores[b, 0] == 1.0
    # item 1 has the pair (766, 2002) among its neighbours: equal scores, lower index first
    assert idx[1, 6:8].tolist() == [766, 2002] and scores[1, 6] == scores[1, 7]
    entry = load_dataset(root).manifest["graphs"]["graphs/knn_image_k10.parquet"]
    assert entry["k"] == 10 and entry["rows"] == 67100 and entry["zero_vectors"] == 0
    assert verify_dataset(root) == []


def test_tiktok_graph_matches_mmtrain_knn(image_feat, reference11):
    """mmtrain builds the same graph from the features itself (torch, float32) as mmprep writes."""
    torch = pytest.importorskip("torch")
    mmtrain_knn = pytest.importorskip("mmtrain.graph.knn")
    from mmprep.graph import knn_graph

    idx, scores = knn_graph(image_feat, 10, device="cpu")
    t_idx, t_val = mmtrain_knn.knn_from_features(torch.from_numpy(image_feat), 10, include_self=False)
    t_idx, t_val = t_idx.numpy(), t_val.numpy()
    np.testing.assert_allclose(t_val, scores, atol=1e-5)
    # the neighbour sets agree wherever the 10th score is clear of the 11th (no float32 near-tie at the edge)
    ref11 = reference11[1]
    clear = ref11[:, 9] - ref11[:, 10] > 1e-5
    assert clear.sum() > 6500
    same = np.sort(t_idx[clear], axis=1) == np.sort(idx[clear], axis=1)
    assert same.all()
