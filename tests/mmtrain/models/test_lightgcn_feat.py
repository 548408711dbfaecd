"""LightGCN with content features against a dense numpy transcription, and the property it exists for: an item
without training interactions is ranked from its features."""

from __future__ import annotations

import numpy as np
import torch

from mmtrain.data.sampler import Batch
from tests.mmtrain.helpers import model_for, numpy_ui, write_dataset


def _dataset(root):
    """6 users, 5 items; item 4 has no training interaction (a cold item), only a test one."""
    train = [(0, 0), (0, 1), (1, 1), (1, 2), (2, 0), (2, 3), (3, 2), (3, 3), (4, 0), (5, 1)]
    rng = np.random.default_rng(7)
    features = {
        "image": rng.normal(size=(5, 6)).astype(np.float32),
        "audio": rng.normal(size=(5, 3)).astype(np.float32),
    }
    splits = {"train": train, "val": [(u, 2) for u in (0, 4, 5)], "test": [(u, 4) for u in range(6)]}
    return write_dataset(root, splits, 6, 5, features)


def test_forward_is_the_layer_mean_of_vbpr_ego_rows(tmp_path):
    root = _dataset(tmp_path / "d")
    model, data, config = model_for(root, "lightgcn_feat", ("ui_layers", 3))
    f = np.concatenate([data.feature("audio").numpy(), data.feature("image").numpy()], 1)  # sorted by name
    w = model.item_linear.weight.detach().numpy().astype(np.float64)
    b = model.item_linear.bias.detach().numpy().astype(np.float64)
    items = np.concatenate([model.item_embedding.detach().numpy(), f @ w.T + b], 1)
    x = np.concatenate([model.user_embedding.detach().numpy(), items]).astype(np.float64)
    a = numpy_ui(data.train.users.numpy(), data.train.items.numpy(), 6, 5)
    layers = [x]
    for _ in range(3):
        layers.append(a @ layers[-1])
    expected = np.mean(layers, axis=0)
    with torch.no_grad():
        user_z, item_z = model()
    np.testing.assert_allclose(user_z.numpy(), expected[:6], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(item_z.numpy(), expected[6:], rtol=1e-5, atol=1e-6)
    assert user_z.shape == (6, 128) and item_z.shape == (5, 128)


def test_cold_item_scores_follow_its_features_and_training_moves_them(tmp_path):
    root = _dataset(tmp_path / "d")
    model, data, config = model_for(root, "lightgcn_feat", ("ui_layers", 2))
    with torch.no_grad():
        _, item_z = model()
        ego = model.ego()[1]
    # no edge: the layer mean of the cold item is its own ego row over L + 1 layers
    torch.testing.assert_close(item_z[4], ego[4] / 3)
    before = model.full_scores(torch.arange(6))[:, 4].detach().clone()
    model.features[4] = model.features[2]  # the cold item now looks like item 2: its feature half follows
    with torch.no_grad():
        after = model.full_scores(torch.arange(6))[:, 4]
        _, item_z = model()
    assert not torch.allclose(before, after)
    torch.testing.assert_close(item_z[4, 64:], model.item_linear(model.features[2]) / 3)
    # the BPR gradient reaches W through the warm items, so the cold item's feature half changes in training
    loss = model.loss(_batch(data))["loss"]
    loss.backward()
    assert model.item_linear.weight.grad.abs().sum() > 0
    assert model.item_embedding.grad[4].abs().sum() == 0  # its ID half is never trained


def _batch(data):
    users = data.train.users[:4]
    return Batch(users=users, pos_items=data.train.items[:4], neg_items=torch.tensor([3, 3, 0, 1]))
