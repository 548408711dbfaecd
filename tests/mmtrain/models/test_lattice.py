"""LATTICE: the learned item graph against a dense numpy computation, blockwise = dense, the per-epoch
rebuild/detach schedule, a one-line error for a missing feature, training on a real TikTok subset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmtrain.data.loader import load_data
from mmtrain.errors import TrainError
from mmtrain.experiment import build_model, make_config
from mmtrain.graph.learned import learned_knn, rows_to_dense
from tests.mmtrain.helpers import (
    model_for,
    random_dataset,
    sym_knn,
    sym_norm,
)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return random_dataset(tmp_path_factory.mktemp("data") / "rand", n_users=30, n_items=25, features=True)


def test_learned_graph_equals_dense_numpy(small):
    model, data, _ = model_for(small, "lattice", ("knn_k", 4))
    model.eval()
    with torch.no_grad():
        model.modal_weight.copy_(torch.tensor([0.3, -0.2]))
        indices, values, weights = model.build_graph()
        h = model.graph_embedding()
    w = torch.softmax(torch.tensor([0.3, -0.2]), 0).double().numpy()
    np.testing.assert_allclose(weights.numpy(), w, rtol=1e-6)
    raw = [data.feature(m).double().numpy() for m in ("audio", "image")]
    projected = [
        x @ p.weight.detach().double().numpy().T + p.bias.detach().double().numpy()
        for x, p in zip(raw, model.projections, strict=True)
    ]
    learned = sym_norm(w[0] * sym_knn(projected[0], 4) + w[1] * sym_knn(projected[1], 4))
    np.testing.assert_allclose(rows_to_dense(indices, values, 25).numpy(), learned, rtol=1e-5, atol=1e-6)
    orig = w[0] * sym_norm(sym_knn(raw[0], 4)) + w[1] * sym_norm(sym_knn(raw[1], 4))
    adjacency = 0.1 * learned + 0.9 * orig
    expected = adjacency @ model.item_embedding.detach().double().numpy()
    np.testing.assert_allclose(h.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert np.count_nonzero(learned.diagonal()) == 25  # self loops: each item is its own top-1


def test_blockwise_graph_equals_dense_graph():
    x = torch.randn(37, 6, generator=torch.Generator().manual_seed(0), requires_grad=True)
    dense_idx, dense_val = learned_knn(x, 5, block=None)
    block_idx, block_val = learned_knn(x, 5, block=4)
    assert torch.equal(dense_idx, block_idx)
    torch.testing.assert_close(dense_val, block_val)
    grad_dense = torch.autograd.grad(dense_val.sum(), x)[0]
    grad_block = torch.autograd.grad(block_val.sum(), x)[0]
    torch.testing.assert_close(grad_dense, grad_block)


def test_blockwise_model_equals_dense_model(small):
    dense, _, _ = model_for(small, "lattice", ("knn_k", 4))
    blockwise, _, _ = model_for(small, "lattice", ("knn_k", 4), ("knn_block", 3))
    with dense.evaluation(), blockwise.evaluation():
        torch.testing.assert_close(
            dense.full_scores(torch.arange(30)), blockwise.full_scores(torch.arange(30))
        )


def test_graph_is_rebuilt_with_gradients_once_per_epoch(small):
    model, _, _ = model_for(small, "lattice", ("knn_k", 4))
    model.train()
    batch = type(
        "B", (), {"users": torch.arange(4), "pos_items": torch.arange(4), "neg_items": torch.arange(4, 8)}
    )
    for step, expect_grad in ((0, True), (1, False), (2, True)):
        if step != 1:
            model.on_epoch_start(step, torch.Generator())
        model.zero_grad()
        model.loss(batch)["loss"].backward()
        got = model.projections[0].weight.grad
        assert (got is not None and bool(got.abs().sum() > 0)) == expect_grad, step


def test_missing_feature_is_a_one_line_error(tmp_path):
    plain = load_data(random_dataset(tmp_path / "plain", n_users=20, n_items=15))
    with pytest.raises(
        TrainError, match=r"plain: model lattice needs item features .*; the dataset has none$"
    ) as err:
        build_model(plain, make_config("lattice", sets=[("device", "cpu")]))
    assert "\n" not in str(err.value)
    rich = load_data(random_dataset(tmp_path / "rich", n_users=20, n_items=15, features=True))
    with pytest.raises(TrainError, match=r"needs 'text' features; the dataset has: audio, image$"):
        build_model(rich, make_config("lattice", sets=[("device", "cpu"), ("modalities", "image,text")]))
