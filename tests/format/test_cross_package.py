"""mmprep and mmtrain agree where they meet: kNN tie-breaking, and runs record where their graphs came from."""

from __future__ import annotations

import json

import numpy as np
import torch

from mmprep.graph.knn import knn_graph
from mmtrain.data import load_data
from mmtrain.graph.knn import knn_from_features, topk_lower_index_first
from tests.mmtrain.helpers import random_dataset


def _tied_features(n: int = 41, seed: int = 5) -> np.ndarray:
    """Rows drawn from e0, e1, e0+e1, 2*e0 and zero: most scores tie exactly with many other items."""
    basis = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [2, 0, 0], [0, 0, 0]], dtype=np.float32)
    return basis[np.random.default_rng(seed).integers(0, len(basis), n)]


def test_fallback_knn_breaks_exact_ties_like_mmprep():
    x = _tied_features()
    expected_idx, expected_val = knn_graph(x, 6, exclude_self=True, device="cpu")
    for block in (None, 1, 7):
        idx, val = knn_from_features(torch.from_numpy(x), 6, include_self=False, block=block)
        assert idx.tolist() == expected_idx.tolist()
        np.testing.assert_allclose(val.numpy(), expected_val, atol=1e-6)
    with_self, self_val = knn_from_features(torch.from_numpy(x), 7, include_self=True, block=5)
    assert with_self[:, 0].tolist() == list(range(len(x)))  # self first even when a duplicate ties with it
    assert with_self[:, 1:].tolist() == expected_idx.tolist()
    np.testing.assert_allclose(self_val[x.any(1), 0].numpy(), 1.0, atol=1e-6)


def test_topk_lower_index_first_on_a_row_of_equal_scores():
    sim = torch.tensor([[0.5, 0.9, 0.5, 0.5, 0.9, 0.1], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    val, idx = topk_lower_index_first(sim, 4)
    assert idx.tolist() == [[1, 4, 0, 2], [0, 1, 2, 3]]
    assert val.tolist() == sim.gather(1, idx).tolist()


def test_final_json_records_the_graph_source(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmtrain.experiment import make_config, run_experiment

    root = random_dataset(tmp_path / "rand", n_users=30, n_items=12, per_user=4, features=True)
    item = np.repeat(np.arange(12), 5).astype(np.int32)
    neighbours = ((np.arange(12)[:, None] + np.arange(1, 6)[None, :]) % 12).astype(np.int32)
    table = pa.table(
        {
            "item_idx": pa.array(item),
            "neighbor_idx": pa.array(neighbours.reshape(-1)),
            "score": pa.array(np.tile(np.linspace(0.9, 0.5, 5, dtype=np.float32), 12)),
            "rank": pa.array(np.tile(np.arange(5, dtype=np.int16), 12)),
        }
    )
    (root / "graphs").mkdir()
    pq.write_table(table, root / "graphs" / "knn_image_k5.parquet")
    data = load_data(root)
    data.item_knn("image", 4, include_self=True)
    data.item_knn("audio", 3, include_self=False)
    assert data.graph_sources == {
        "image": {
            "source": "stored",
            "file": "graphs/knn_image_k5.parquet",
            "stored_k": 5,
            "k": 4,
            "include_self": True,
        },
        "audio": {"source": "computed", "k": 3, "include_self": False},
    }
    sets = [("device", "cpu"), ("epochs", 1), ("threads", 1), ("tensorboard", False), ("knn_k", 3)]
    config = make_config("lattice", sets=sets)
    result = run_experiment(root, config, out=tmp_path / "runs", name="r", progress=False)
    final = json.loads((result.path / "final.json").read_text())
    assert final["graph_source"] == result.final["graph_source"]
    assert set(final["graph_source"]) == {"image", "audio"}
    assert final["graph_source"]["image"]["source"] == "stored"
    assert final["graph_source"]["audio"] == {"source": "computed", "k": 3, "include_self": True}
