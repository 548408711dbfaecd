"""mmtrain graph blocks: U-I normalisations and LightGCN propagation against dense NumPy, sparse gradients, kNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmtrain.data import load_data
from mmtrain.experiment import build_model, make_config
from mmtrain.graph import knn_adjacency, knn_from_features, lightgcn_propagate, ui_adjacency
from tests.mmtrain.helpers import (
    random_dataset,
)


def dense_ui(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, norm: str) -> np.ndarray:
    """The normalised bipartite adjacency written out densely, straight from the formulas."""
    n = n_users + n_items
    a = np.zeros((n, n))
    a[users, n_users + items] = 1.0
    a[n_users + items, users] = 1.0
    if norm != "sym":
        a += np.eye(n)
    deg = a.sum(1)
    with np.errstate(divide="ignore"):
        if norm == "rw_self":
            return a / deg[:, None]
        d = np.where(deg > 0, deg**-0.5, 0.0)
    return d[:, None] * a * d[None, :]


@pytest.mark.parametrize("norm", ["sym", "sym_self", "rw_self"])
def test_ui_adjacency_matches_dense_formula(norm):
    rng = np.random.default_rng(1)
    users, items = rng.integers(0, 7, 25), rng.integers(0, 9, 25)
    keys = np.unique(users * 9 + items)
    users, items = keys // 9, keys % 9
    op = ui_adjacency(torch.as_tensor(users), torch.as_tensor(items), 8, 9, norm)  # user 7 is isolated
    expected = dense_ui(users, items, 8, 9, norm)
    assert np.allclose(op.to_dense().numpy(), expected, atol=1e-6)
    if norm == "sym":
        assert np.all(expected[7] == 0)  # isolated node: zero row, not NaN


def test_lightgcn_propagation_equals_dense_numpy(tmp_path):
    data = load_data(random_dataset(tmp_path / "rand", n_users=30, n_items=20, per_user=6))
    config = make_config("lightgcn", sets=[("ui_layers", 3), ("device", "cpu")])
    model = build_model(data, config)
    users, items = model.forward()
    a = dense_ui(data.train.users.numpy(), data.train.items.numpy(), 30, 20, "sym")
    e = np.concatenate([model.user_embedding.detach().numpy(), model.item_embedding.detach().numpy()]).astype(
        np.float64
    )
    layers = [e]
    for _ in range(3):
        layers.append(a @ layers[-1])
    expected = np.mean(layers, axis=0)
    assert np.allclose(users.detach().numpy(), expected[:30], atol=1e-5)
    assert np.allclose(items.detach().numpy(), expected[30:], atol=1e-5)
    # full_scores are the dot products of the propagated embeddings
    scores = model.full_scores(torch.tensor([0, 5])).detach().numpy()
    assert np.allclose(scores, expected[[0, 5]] @ expected[30:].T, atol=1e-5)


@pytest.mark.parametrize("norm", ["sym", "rw_self"])
def test_sparse_product_gradient_equals_dense(norm):
    rng = np.random.default_rng(2)
    users, items = torch.as_tensor(rng.integers(0, 6, 20)), torch.as_tensor(rng.integers(0, 5, 20))
    op = ui_adjacency(users, items, 6, 5, norm)
    dense = op.to_dense()
    x = torch.randn(11, 4, dtype=torch.float32, requires_grad=True)
    weight = torch.randn(11, 4)
    (lightgcn_propagate(op, x, 2) * weight).sum().backward()
    grad_sparse = x.grad.clone()
    x.grad = None
    layer, total = x, x
    for _ in range(2):
        layer = dense @ layer
        total = total + layer
    ((total / 3) * weight).sum().backward()
    assert torch.allclose(grad_sparse, x.grad, atol=1e-5)


def test_knn_from_features_matches_brute_force():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(37, 6, generator=gen)
    idx, val = knn_from_features(x, 4, include_self=False, block=5)
    unit = x / x.norm(dim=1, keepdim=True)
    sim = (unit @ unit.T).numpy()
    np.fill_diagonal(sim, -np.inf)
    expected = np.argsort(-sim, axis=1, kind="stable")[:, :4]
    assert np.array_equal(idx.numpy(), expected)
    assert np.allclose(val.numpy(), np.take_along_axis(sim, expected, 1), atol=1e-6)
    with_self, _ = knn_from_features(x, 4, include_self=True)
    assert with_self[:, 0].tolist() == list(range(37))
    op = knn_adjacency(idx, val, norm="rw")
    assert np.allclose(op.to_dense().sum(1).numpy(), 1.0, atol=1e-5)


def test_item_knn_reads_stored_graph_or_computes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = random_dataset(tmp_path / "rand", n_users=20, n_items=10, per_user=4, features=True)
    data = load_data(root)
    computed_idx, computed_val = data.item_knn("image", 3, include_self=False)
    expected_idx, _ = knn_from_features(data.feature("image"), 3, include_self=False)
    assert torch.equal(computed_idx, expected_idx)
    # a stored graph (rows shuffled; 4 neighbours, 3 asked for) wins over computing, nearest first
    neighbours = (np.arange(10)[:, None] + np.arange(1, 5)[None, :]) % 10
    item = np.repeat(np.arange(10), 4).astype(np.int32)
    order = np.random.default_rng(0).permutation(40)
    table = pa.table(
        {
            "item_idx": pa.array(item[order]),
            "neighbor_idx": pa.array(neighbours.reshape(-1)[order].astype(np.int32)),
            "score": pa.array((1.0 - np.tile(np.arange(4), 10) / 10).astype(np.float32)[order]),
            "rank": pa.array(np.tile(np.arange(4), 10).astype(np.int16)[order]),
        }
    )
    (root / "graphs").mkdir()
    pq.write_table(table, root / "graphs" / "knn_image_k4.parquet")
    data = load_data(root)
    idx, val = data.item_knn("image", 3, include_self=False)
    assert idx.tolist() == neighbours[:, :3].tolist()
    assert val[0].tolist() == pytest.approx([1.0, 0.9, 0.8])
    with_self, self_val = data.item_knn("image", 3, include_self=True)
    assert with_self.tolist() == [[i, *neighbours[i, :2]] for i in range(10)]
    assert self_val[:, 0].tolist() == [1.0] * 10
