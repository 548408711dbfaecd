"""MMGCN: the mean U-I operator and the modality GCN against dense numpy, its loss, the MMRec quirk, TikTok."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmtrain.data.loader import load_data
from mmtrain.data.sampler import Batch
from mmtrain.errors import TrainError
from mmtrain.experiment import build_model, make_config
from mmtrain.graph import ui_adjacency
from mmtrain.models.mmgcn import mmgcn_layer, projected_modalities
from mmtrain.trainer import Trainer
from tests.mmtrain.helpers import (
    random_dataset,
)


def leaky(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, 0.01 * x)


def linear(layer: torch.nn.Linear, x: np.ndarray) -> np.ndarray:
    return x @ layer.weight.detach().numpy().T.astype(np.float64) + layer.bias.detach().numpy()


def dense_mean(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> np.ndarray:
    """Each node the mean of its neighbours over both edge directions (PyG ``aggr='mean'``)."""
    a = np.zeros((n_users + n_items, n_users + n_items))
    a[users, n_users + items] = 1.0
    a[n_users + items, users] = 1.0
    deg = a.sum(1, keepdims=True)
    return np.divide(a, deg, out=np.zeros_like(a), where=deg > 0)


def test_mean_operator_averages_the_neighbours():
    # users 0: items {0, 1}; 1: item {1}; 2: none. Items 0: user {0}; 1: users {0, 1}; 2: none
    op = ui_adjacency(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 3, 3, "mean")
    x = torch.tensor([[1.0, 0.0], [2.0, 4.0], [9.0, 9.0], [3.0, 5.0], [7.0, 1.0], [8.0, 8.0]])
    expected = [[5.0, 3.0], [7.0, 1.0], [0.0, 0.0], [1.0, 0.0], [1.5, 2.0], [0.0, 0.0]]
    torch.testing.assert_close(op @ x, torch.tensor(expected))
    # the gradient goes through the transpose: d(sum(w * Ā x))/dx = Āᵀ w
    x.requires_grad_(True)
    w = torch.arange(12.0).reshape(6, 2)
    ((op @ x) * w).sum().backward()
    torch.testing.assert_close(x.grad, op.to_dense().T @ w)


def test_one_layer_equals_dense_numpy(tmp_path):
    data = load_data(random_dataset(tmp_path / "rand", n_users=20, n_items=15, per_user=5, features=True))
    config = make_config("mmgcn", sets=[("device", "cpu"), ("dim_latent", 8), ("embedding_size", 6)])
    model = build_model(data, config)
    gcn = model.gcns["image"]
    a = dense_mean(data.train.users.numpy(), data.train.items.numpy(), 20, 15)
    x = np.random.default_rng(3).normal(size=(35, 8))
    ids = model.id_embedding.detach().numpy().astype(np.float64)
    w = gcn.conv_weights[0].detach().numpy().astype(np.float64)
    h = leaky(a @ (x @ w))
    x_hat = leaky(linear(gcn.linears[0], x)) + ids
    expected = leaky(linear(gcn.gates[0], np.concatenate([h, x_hat], 1)))
    out = mmgcn_layer(
        model.adjacency, torch.tensor(x, dtype=torch.float32), gcn.conv_weights[0], gcn.linears[0],
        gcn.gates[0], model.id_embedding,
    )  # fmt: skip
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-4, atol=1e-5)
    assert np.any(expected < 0)  # the leaky slope of the final gate is exercised


def test_forward_equals_dense_numpy(tmp_path):
    data = load_data(random_dataset(tmp_path / "rand", n_users=20, n_items=15, per_user=5, features=True))
    config = make_config("mmgcn", sets=[("device", "cpu"), ("dim_latent", 8), ("embedding_size", 6)])
    model = build_model(data, config)
    assert model.modalities == ["audio", "image"] and model.projected == ["image"]
    a = dense_mean(data.train.users.numpy(), data.train.items.numpy(), 20, 15)
    ids = model.id_embedding.detach().numpy().astype(np.float64)
    reps = []
    for m in model.modalities:
        gcn = model.gcns[m]
        feats = data.feature(m).numpy().astype(np.float64)
        items = linear(gcn.mlp, feats) if m == "image" else feats  # audio (5-d) enters raw
        x = np.concatenate([gcn.preference.detach().numpy(), items])
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        for w, lin, gate in zip(gcn.conv_weights, gcn.linears, gcn.gates, strict=True):
            h = leaky(a @ (x @ w.detach().numpy()))
            x = leaky(linear(gate, np.concatenate([h, leaky(linear(lin, x)) + ids], 1)))
        reps.append(x)
    expected = (reps[0] + reps[1]) / 2
    users, items = model.forward()
    np.testing.assert_allclose(users.detach().numpy(), expected[:20], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(items.detach().numpy(), expected[20:], rtol=1e-4, atol=1e-5)
    assert model.gcns["image"].preference.shape == (20, 8) and model.gcns["audio"].preference.shape == (20, 5)


def test_loss_follows_the_reference_formula(tmp_path):
    data = load_data(random_dataset(tmp_path / "rand", n_users=20, n_items=15, per_user=5, features=True))
    config = make_config("mmgcn", sets=[("device", "cpu"), ("reg_weight", 0.5)])
    model = build_model(data, config)
    batch = Batch(torch.tensor([0, 3, 3]), torch.tensor([1, 2, 4]), torch.tensor([5, 6, 0]))
    parts = model.loss(batch)
    users, items = model.forward()
    pos = (users[batch.users] * items[batch.pos_items]).sum(1)
    neg = (users[batch.users] * items[batch.neg_items]).sum(1)
    bpr = -torch.log(torch.sigmoid(pos - neg)).mean()
    ids = model.id_embedding.detach()
    u = ids[batch.users.repeat_interleave(2)]
    i = ids[20 + torch.stack([batch.pos_items, batch.neg_items], 1).reshape(-1)]
    reg = (u**2 + i**2).mean() + (model.gcns["image"].preference.detach() ** 2).mean()
    torch.testing.assert_close(parts["bpr"], bpr)
    torch.testing.assert_close(parts["reg"], 0.5 * reg)
    torch.testing.assert_close(parts["loss"], bpr + 0.5 * reg)


def test_projected_modalities():
    assert projected_modalities("image", ["audio", "image"]) == ["image"]
    assert projected_modalities("image", ["audio", "text"]) == []
    assert projected_modalities("all", ["audio", "image"]) == ["audio", "image"]
    assert projected_modalities("none", ["audio", "image"]) == []
    assert projected_modalities("text, audio", ["audio", "image", "text"]) == ["audio", "text"]


@pytest.mark.parametrize("trainable", [True, False])
def test_train_id_embedding_switch(tmp_path, trainable):
    data = load_data(random_dataset(tmp_path / "rand", n_users=20, n_items=15, per_user=5, features=True))
    config = make_config(
        "mmgcn", sets=[("device", "cpu"), ("threads", 1), ("train_id_embedding", trainable), ("epochs", 1)]
    )
    trainer = Trainer(build_model(data, config), data, config, progress=False)
    model = trainer.model
    names = {n for n, _ in model.named_parameters()}
    assert ("id_embedding" in names) == trainable and ("gcns.image.preference" in names) == trainable
    assert {"id_embedding", "gcns.image.preference"} <= set(model.state_dict())  # saved in checkpoints
    before = model.id_embedding.detach().clone(), model.gcns["audio"].preference.detach().clone()
    gate = model.gcns["image"].gates[0].weight.detach().clone()
    trainer.train_epoch(1)
    assert not torch.equal(gate, model.gcns["image"].gates[0].weight)
    assert torch.equal(before[0], model.id_embedding) != trainable
    assert torch.equal(before[1], model.gcns["audio"].preference) != trainable


def test_missing_feature_is_a_one_line_error(tmp_path):
    plain = load_data(random_dataset(tmp_path / "plain", n_users=20, n_items=15))
    with pytest.raises(
        TrainError,
        match=r"plain: model mmgcn needs item features \(features/<modality>\.npy\); the dataset has none$",
    ) as err:
        build_model(plain, make_config("mmgcn", sets=[("device", "cpu")]))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("trainable", [True, False])
def test_loss_on_batch_rows_equals_the_full_graph_loss(tmp_path, trainable):
    # the training loss computes the last layer on the batch's rows only; loss and every gradient must equal
    # the reference computation (the whole graph's last layer, then indexed), repeated users/items included
    data = load_data(random_dataset(tmp_path / "rand", n_users=30, n_items=25, per_user=6, features=True))
    sets = [("device", "cpu"), ("reg_weight", 0.1), ("train_id_embedding", trainable)]
    model = build_model(data, make_config("mmgcn", sets=sets))
    batch = Batch(
        torch.tensor([0, 3, 3, 7, 29]), torch.tensor([1, 2, 4, 1, 24]), torch.tensor([5, 6, 0, 9, 1])
    )
    params = [p for p in model.parameters() if p.requires_grad]
    fast = model.loss(batch)
    fast_grads = torch.autograd.grad(fast["loss"], params, retain_graph=True)
    users, items = model.forward()
    u = users[batch.users]
    bpr = -torch.log(torch.sigmoid((u * items[batch.pos_items]).sum(1) - (u * items[batch.neg_items]).sum(1)))
    full = bpr.mean() + fast["reg"]
    full_grads = torch.autograd.grad(full, params, allow_unused=True)
    torch.testing.assert_close(fast["bpr"], bpr.mean(), rtol=1e-6, atol=1e-7)
    assert len(params) > 10
    for p, a, b in zip(params, fast_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b if b is not None else torch.zeros_like(p), rtol=1e-5, atol=1e-7)
