"""MGCN: the attention fusion by hand, the whole forward (purifier, kNN views, fusion, preference gates) and the
loss against numpy, a one-line error for a missing feature, training on a real TikTok subset."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mmtrain.data.loader import load_data
from mmtrain.data.sampler import Batch
from mmtrain.errors import TrainError
from mmtrain.experiment import build_model, make_config
from mmtrain.models.mgcn import attention_fusion
from tests.mmtrain.helpers import (
    model_for,
    numpy_infonce,
    numpy_ui,
    random_dataset,
    sym_knn,
    sym_norm,
)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def linear(layer: nn.Linear, x: np.ndarray) -> np.ndarray:
    out = x @ layer.weight.detach().double().numpy().T
    return out + layer.bias.detach().double().numpy() if layer.bias is not None else out


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return random_dataset(tmp_path_factory.mktemp("data") / "rand", n_users=30, n_items=25, features=True)


def test_attention_fusion_by_hand():
    query = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        query[0].weight.copy_(torch.eye(2))
        query[0].bias.zero_()
        query[2].weight.copy_(torch.tensor([[1.0, 1.0]]))
    first, second = torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[0.0, 2.0], [0.0, 0.0]])
    alpha, common = attention_fusion([first, second], query)
    # row 0: q = tanh(1) and tanh(2); row 1: both 0, so α = ½
    a0 = math.exp(math.tanh(1)) / (math.exp(math.tanh(1)) + math.exp(math.tanh(2)))
    torch.testing.assert_close(alpha, torch.tensor([[a0, 1 - a0], [0.5, 0.5]]))
    torch.testing.assert_close(common, torch.tensor([[a0, 2 * (1 - a0)], [0.0, 0.0]]))


def numpy_forward(model, data, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Z, side, C)`` of MGCN from its parameters, every step in float64 numpy."""
    m_users = data.n_users
    e_u = model.user_embedding.detach().double().numpy()
    e_i = model.item_embedding.detach().double().numpy()
    a_ui = numpy_ui(data.train.users.numpy(), data.train.items.numpy(), m_users, data.n_items)
    ego = np.concatenate([e_u, e_i])
    content = (ego + a_ui @ ego + a_ui @ a_ui @ ego) / 3
    r_tilde = a_ui[:m_users, m_users:]
    views = []
    for idx, modality in enumerate(model.modalities):
        x = data.feature(modality).double().numpy()
        purified = e_i * sigmoid(linear(model.gates[idx][0], linear(model.projections[idx], x)))
        h = sym_norm(sym_knn(x, k)) @ purified
        views.append(np.concatenate([r_tilde @ h, h]))
    w1, w2 = model.query[0], model.query[2]
    scores = np.stack([linear(w2, np.tanh(linear(w1, v)))[:, 0] for v in views], 1)
    alpha = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    common = sum(alpha[:, [m]] * v for m, v in enumerate(views))
    specific = [sigmoid(linear(model.preferences[m][0], content)) * (v - common) for m, v in enumerate(views)]
    side = (sum(specific) + common) / (len(views) + 1)
    return content + side, side, content


def test_forward_and_loss_equal_numpy(small):
    model, data, config = model_for(
        small, "mgcn", ("threads", 1), ("knn_k", 4), ("reg_weight", 0.1), ("cl_weight", 0.5)
    )
    assert model.modalities == ["audio", "image"]
    assert all(f.requires_grad for f in model.features)  # raw features are trained, as in the reference
    with torch.no_grad():  # non-zero projection biases so the purifier's affine parts are checked too
        for layer in (*model.projections, *(g[0] for g in model.gates), *(p[0] for p in model.preferences)):
            layer.bias.uniform_(-0.5, 0.5)
    z, side, content = numpy_forward(model, data, 4)
    model.eval()
    with torch.no_grad():
        user_z, item_z = model()
    np.testing.assert_allclose(user_z.numpy(), z[: data.n_users], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(item_z.numpy(), z[data.n_users :], rtol=1e-4, atol=1e-6)

    users, pos, neg = torch.tensor([0, 3, 7, 3]), torch.tensor([1, 2, 5, 9]), torch.tensor([4, 0, 8, 11])
    with torch.no_grad():
        parts = model.loss(Batch(users, pos, neg))
    u, p, n = z[users.numpy()], z[data.n_users + pos.numpy()], z[data.n_users + neg.numpy()]
    diff = (u * p).sum(1) - (u * n).sum(1)
    bpr = np.mean(np.log1p(np.exp(-diff)))
    reg = 0.1 * 0.5 * ((u**2).sum() + (p**2).sum() + (n**2).sum()) / config["batch_size"]
    item_rows = data.n_users + pos.numpy()
    cl = numpy_infonce(side[item_rows], content[item_rows]) + numpy_infonce(side[users], content[users])
    assert parts["bpr"].item() == pytest.approx(bpr, rel=1e-4)
    assert parts["reg"].item() == pytest.approx(reg, rel=1e-4)
    assert parts["cl"].item() == pytest.approx(0.5 * cl, rel=1e-4)
    assert parts["loss"].item() == pytest.approx(bpr + reg + 0.5 * cl, rel=1e-4)


def test_missing_feature_is_a_one_line_error(tmp_path):
    plain = load_data(random_dataset(tmp_path / "plain", n_users=20, n_items=15))
    with pytest.raises(TrainError, match=r"model mgcn needs item features .*the dataset has none$") as err:
        build_model(plain, make_config("mgcn", sets=[("device", "cpu")]))
    assert "\n" not in str(err.value)
    rich = load_data(random_dataset(tmp_path / "rich", n_users=20, n_items=15, features=True))
    with pytest.raises(TrainError, match=r"needs 'text' features; the dataset has: audio, image"):
        build_model(rich, make_config("mgcn", sets=[("device", "cpu"), ("modalities", "image,text")]))
