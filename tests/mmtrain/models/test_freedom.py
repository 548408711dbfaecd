"""FREEDOM: the frozen multimodal item graph against numpy, degree-sensitive pruning, training on TikTok."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmtrain.data.loader import load_data
from mmtrain.errors import TrainError
from mmtrain.experiment import build_model, make_config
from mmtrain.graph.prune import degree_weights, prune_edges, weighted_sample
from mmtrain.models.freedom import frozen_item_graph, modality_weights
from mmtrain.models.multimodal import listed, modality_requirements, select
from tests.mmtrain.helpers import (
    random_dataset,
)


def numpy_knn_graph(x: np.ndarray, k: int) -> np.ndarray:
    """Dense reference: top-k cosine (self included), entries 1, ``D^-1/2 B D^-1/2`` on row degrees."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = unit @ unit.T
    binary = np.zeros_like(sim)
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    np.put_along_axis(binary, top, 1.0, axis=1)
    d = binary.sum(1) ** -0.5
    return d[:, None] * binary * d[None, :]


def test_modalities_hyperparameter():
    assert listed("all") == () and listed(" text, image,") == ("image", "text")
    assert select("all", ["text", "audio"]) == ["audio", "text"]
    assert select("image", ["text", "image"]) == ["image"]
    assert modality_requirements("all").any_feature and modality_requirements("all").features == ()
    assert modality_requirements("text,image").features == ("image", "text")


def test_modality_weights():
    assert modality_weights(["image", "text"], 0.1) == [0.1, 0.9]
    assert modality_weights(["audio", "image", "text"], 0.1) == pytest.approx([0.45, 0.1, 0.45])
    assert modality_weights(["audio"], 0.1) == [1.0]
    assert modality_weights(["audio", "text"], 0.1) == [0.5, 0.5]


def test_frozen_item_graph_equals_dense_numpy(tmp_path):
    root = random_dataset(tmp_path / "rand", n_users=30, n_items=25, features=True)
    data = load_data(root)
    graph = frozen_item_graph(data, ["audio", "image"], 4, 0.1).to_dense().numpy()
    audio, image = (data.feature(m).numpy().astype(np.float64) for m in ("audio", "image"))
    expected = 0.9 * numpy_knn_graph(audio, 4) + 0.1 * numpy_knn_graph(image, 4)
    np.testing.assert_allclose(graph, expected, rtol=1e-6, atol=1e-7)
    assert np.count_nonzero(graph.diagonal()) == 25  # each item is its own nearest neighbour
    np.testing.assert_allclose(graph.sum(1), np.ones(25), rtol=1e-6)  # binary top-k rows: 4 x 1/4


USERS = torch.tensor([0, 0, 1, 2, 2, 3])
ITEMS = torch.tensor([0, 1, 0, 0, 2, 1])


def test_degree_weights_follow_the_formula():
    # user degrees 2,1,2,1; item degrees 3,2,1
    expected = [1 / math.sqrt(2 * 3), 1 / math.sqrt(2 * 2), 1 / math.sqrt(1 * 3)]
    expected += [1 / math.sqrt(2 * 3), 1 / math.sqrt(2 * 1), 1 / math.sqrt(1 * 2)]
    torch.testing.assert_close(degree_weights(USERS, ITEMS, 4, 3), torch.tensor(expected))


def test_weighted_sample_draws_in_proportion_to_the_weights():
    weights = degree_weights(USERS, ITEMS, 4, 3)
    generator = torch.Generator().manual_seed(0)
    trials = 6000
    counts = torch.zeros(6)
    for _ in range(trials):
        counts[weighted_sample(weights, 1, generator)] += 1
    expected = weights / weights.sum()
    sigma = (expected * (1 - expected) / trials).sqrt()
    assert ((counts / trials - expected).abs() < 4 * sigma).all(), (counts / trials, expected)
    assert sorted(weighted_sample(weights, 6, generator).tolist()) == list(range(6))


def test_pruning_keeps_the_fraction_renormalises_and_is_seeded():
    def prune(seed: int, dropout: float = 0.5):
        return prune_edges(USERS, ITEMS, 4, 3, dropout, torch.Generator().manual_seed(seed))

    first = prune(3)
    idx, val = first.indices(), first.values()
    assert idx.shape[1] == 2 * 3  # int(6 * 0.5) edges, both directions
    kept = idx[:, idx[0] < 4]
    kept_users, kept_items = kept[0], kept[1] - 4
    d_user = torch.bincount(kept_users, minlength=4).float()
    d_item = torch.bincount(kept_items, minlength=3).float()
    dense = first.to_dense()
    torch.testing.assert_close(dense[kept_users, kept[1]], (d_user[kept_users] * d_item[kept_items]).rsqrt())
    torch.testing.assert_close(dense, dense.T)
    assert torch.equal(prune(3).to_dense(), dense)
    assert any(not torch.equal(prune(s).to_dense(), dense) for s in range(4, 10))
    assert val.numel() == 6 and prune(3, dropout=0.8).indices().shape[1] == 2 * 1
    assert prune(3, dropout=0.0).indices().shape[1] == 12


def test_missing_feature_is_a_one_line_error(tmp_path):
    plain = load_data(random_dataset(tmp_path / "plain", n_users=20, n_items=15))
    with pytest.raises(
        TrainError,
        match=r"plain: model freedom needs item features \(features/<modality>\.npy\); the dataset has none$",
    ) as err:
        build_model(plain, make_config("freedom", sets=[("device", "cpu")]))
    assert "\n" not in str(err.value)
    rich = load_data(random_dataset(tmp_path / "rich", n_users=20, n_items=15, features=True))
    config = make_config("freedom", sets=[("device", "cpu"), ("modalities", "image,text")])
    with pytest.raises(TrainError, match=r"needs 'text' features; the dataset has: audio, image"):
        build_model(rich, config)


def test_projections_keep_torch_default_init_as_mmrec(tmp_path):
    # MMRec's freedom.py never re-initialises image_trs/text_trs (they matter once reg_weight > 0); found by the
    # parity review (issue 15): ours had Xavier-normal weights. Replaying the same draws must give equal weights.
    data = load_data(random_dataset(tmp_path / "rand", n_users=20, n_items=15, per_user=5, features=True))
    config = make_config("freedom", sets=[("device", "cpu"), ("reg_weight", 1e-3), ("feat_embed_dim", 16)])
    torch.manual_seed(7)
    model = build_model(data, config)
    torch.manual_seed(7)
    torch.nn.init.xavier_uniform_(torch.empty(20, config["embedding_size"]))
    torch.nn.init.xavier_uniform_(torch.empty(15, config["embedding_size"]))
    for m, layer in zip(model.modalities, model.projections, strict=True):
        expected = torch.nn.Linear(data.feature(m).shape[1], 16)
        torch.testing.assert_close(layer.weight, expected.weight, rtol=0, atol=0)
        torch.testing.assert_close(layer.bias, expected.bias, rtol=0, atol=0)
