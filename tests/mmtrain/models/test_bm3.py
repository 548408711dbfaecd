"""BM3: the bootstrap loss against a hand computation (values and stop-gradient), training on TikTok."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmtrain.data.loader import load_data
from mmtrain.data.sampler import Batch
from mmtrain.errors import TrainError
from mmtrain.experiment import build_model, make_config
from mmtrain.models.bm3 import cosine_gap
from tests.mmtrain.helpers import (
    write_dataset,
)

TRAIN = [(0, 0), (0, 1), (1, 1), (1, 2), (2, 0), (2, 3), (3, 2)]


@pytest.fixture()
def tiny(tmp_path):
    rng = np.random.default_rng(3)
    features = {"image": rng.normal(size=(4, 3)).astype(np.float32)}
    features["text"] = rng.normal(size=(4, 5)).astype(np.float32)
    splits = {"train": TRAIN, "val": [(3, 0)], "test": [(3, 1)]}
    return load_data(write_dataset(tmp_path / "tiny", splits, 4, 4, features))


def test_cosine_gap_by_hand():
    one = torch.tensor([[1.0, 0.0]])
    assert cosine_gap(one, torch.tensor([[0.0, 1.0]])).item() == pytest.approx(1.0)
    assert cosine_gap(torch.tensor([[1.0, 1.0]]), one).item() == pytest.approx(1 - 1 / math.sqrt(2))
    pair = cosine_gap(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[2.0, 0.0], [-1.0, -1.0]]))
    assert pair.item() == pytest.approx(1 - (1 - 1) / 2)


def hand_loss(model, data, users, items, detach: bool) -> torch.Tensor:
    """BM3's loss written out with a dense adjacency from the pairs (dropout 0: targets = online values)."""
    n_u = data.n_users
    a = np.zeros((n_u + data.n_items,) * 2)
    for u, i in TRAIN:
        a[u, n_u + i] = a[n_u + i, u] = 1.0
    d = a.sum(1) ** -0.5
    adj = torch.tensor(d[:, None] * a * d[None, :])
    ego = torch.cat([model.user_embedding, model.item_embedding]).double()
    mean = (ego + adj @ ego) / 2  # one layer: mean of layers 0 and 1
    user_z, item_z = mean[:n_u], mean[n_u:] + model.item_embedding.double()
    w, b = model.predictor.weight.double(), model.predictor.bias.double()

    def pred(x):
        return x @ w.T + b

    def gap(x, y):
        y = y.detach() if detach else y
        return 1 - torch.nn.functional.cosine_similarity(x, y, dim=-1).mean()

    rec = gap(pred(user_z[users]), item_z[items]) + gap(pred(item_z[items]), user_z[users])
    align = 0.0
    for x, proj in zip(model.features, model.projections, strict=True):
        f = x.double() @ proj.weight.double().T + proj.bias.double()
        align = align + gap(pred(f[items]), item_z[items]) + gap(pred(f[items]), f[items])
    reg = (user_z.norm() + item_z.norm()) / data.n_items
    return rec + 0.1 * reg + 2.0 * align


def test_loss_matches_hand_computation_and_targets_get_no_gradient(tiny):
    config = make_config("bm3", sets=[("device", "cpu"), ("dropout", 0.0), ("threads", 1)])
    model = build_model(tiny, config)
    assert model.modalities == ["image", "text"]
    users, items = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([1, 2, 3, 2, 0])
    out = model.loss(Batch(users, items, torch.zeros_like(items)))
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(out["loss"], params)
    expected = hand_loss(model, tiny, users, items, detach=True)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    for got, want in zip(grads, torch.autograd.grad(expected, params), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    leaky = torch.autograd.grad(hand_loss(model, tiny, users, items, detach=False), params)
    assert any(not torch.allclose(g, w, rtol=1e-3, atol=1e-5) for g, w in zip(grads, leaky, strict=True))


def test_target_dropout_only_in_training(tiny):
    config = make_config("bm3", sets=[("device", "cpu"), ("dropout", 0.5), ("threads", 1)])
    model = build_model(tiny, config)
    batch = Batch(torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([0, 0]))
    torch.manual_seed(0)
    a = model.loss(batch)["loss"].item()
    torch.manual_seed(1)
    assert model.loss(batch)["loss"].item() != a  # dropped-out targets differ per draw
    model.eval()
    with torch.no_grad():
        clean = model.loss(batch)["loss"].item()
    assert clean == pytest.approx(hand_loss(model, tiny, batch.users, batch.pos_items, True).item(), rel=1e-5)


def test_missing_feature_is_a_one_line_error(tiny):
    config = make_config("bm3", sets=[("device", "cpu"), ("modalities", "audio,image")])
    with pytest.raises(TrainError, match=r"model bm3 needs 'audio' features; the dataset has: image, text$"):
        build_model(tiny, config)
