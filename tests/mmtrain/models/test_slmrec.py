"""SLMRec and mmtrain.models.augment: each augmentation against hand expectations, the FAC loss against numpy, the
whole loss (main + FAC/FD/FM/FD+FM) against a dense hand computation, training on TikTok."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mmtrain.data.loader import load_data
from mmtrain.data.sampler import Batch
from mmtrain.errors import TrainError
from mmtrain.experiment import build_model, make_config
from mmtrain.graph.adjacency import ui_adjacency
from mmtrain.graph.propagate import lightgcn_propagate
from mmtrain.models.augment import (
    distinct_choices,
    dropout_propagate,
    feature_dropout,
    mask_modalities,
)
from mmtrain.models.slmrec import fac_loss, fac_order
from tests.mmtrain.helpers import (
    write_dataset,
)

TRAIN = [(0, 0), (0, 1), (1, 1), (1, 2), (2, 0), (2, 3), (3, 2)]
USERS, ITEMS = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([1, 2, 3, 2, 0])


@pytest.fixture()
def tiny(tmp_path):
    rng = np.random.default_rng(3)
    features = {"image": rng.normal(size=(4, 3)).astype(np.float32)}
    features["text"] = rng.normal(size=(4, 5)).astype(np.float32)
    splits = {"train": TRAIN, "val": [(3, 0)], "test": [(3, 1)]}
    return load_data(write_dataset(tmp_path / "tiny", splits, 4, 4, features))


def np_ce_diag(logits: np.ndarray) -> float:
    """Cross-entropy with the diagonal as targets: ``mean_i (logsumexp_j l_ij − l_ii)``."""
    top = logits.max(1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(1)) + top[:, 0]
    return float(np.mean(lse - np.diag(logits)))


def np_info_nce(a: np.ndarray, b: np.ndarray, tau: float) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np_ce_diag(a @ b.T / tau)


def np_linear(layer: torch.nn.Linear, x: np.ndarray) -> np.ndarray:
    return x @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()


def np_adjacency(n_users: int, n_items: int) -> np.ndarray:
    a = np.zeros((n_users + n_items,) * 2)
    for u, i in TRAIN:
        a[u, n_users + i] = a[n_users + i, u] = 1.0
    d = (a.sum(1) + 1e-8) ** -0.5  # the reference's D = rowsum + 1e-8
    return d[:, None] * a * d[None, :]


# ---------------------------------------------------------------- augmentations


def test_feature_dropout_keeps_about_one_minus_p_and_scales_survivors():
    x = torch.full((200, 50), 2.0)
    gen = torch.Generator().manual_seed(0)
    out = feature_dropout(x, 0.3, gen)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.02  # 10,000 Bernoulli(0.7): sd 0.0046
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 2.0 / 0.7))  # inverted, as nn.Dropout
    expected_mask = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) >= 0.3
    assert torch.equal(kept, expected_mask)  # one uniform per entry, dropped below p
    plain = feature_dropout(x, 0.3, torch.Generator().manual_seed(0), scale=False)
    assert torch.equal(plain, x * expected_mask)
    assert feature_dropout(x, 0.0) is x
    with pytest.raises(ValueError, match="dropout p"):
        feature_dropout(x, 1.0)


def test_dropout_propagate_drops_each_propagated_layer_before_the_next():
    adj = ui_adjacency(torch.tensor([u for u, _ in TRAIN]), torch.tensor([i for _, i in TRAIN]), 4, 4)
    dense_adj = torch.tensor(np_adjacency(4, 4), dtype=torch.float32)
    e0 = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    got = dropout_propagate(adj, e0, 2, 0.5, torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(2)
    m1 = (torch.rand(8, 6, generator=gen) >= 0.5).float() * 2
    m2 = (torch.rand(8, 6, generator=gen) >= 0.5).float() * 2
    e1 = dense_adj @ e0 * m1
    e2 = dense_adj @ e1 * m2  # the dropped e1 is what propagates
    torch.testing.assert_close(got, (e0 + e1 + e2) / 3, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dropout_propagate(adj, e0, 2, 0.0), lightgcn_propagate(adj, e0, 2))


def test_distinct_choices_are_distinct_and_uniform_over_ordered_pairs():
    gen = torch.Generator().manual_seed(0)
    draws = [tuple(distinct_choices(3, 2, gen)) for _ in range(3000)]
    assert all(a != b for a, b in draws)
    counts = {pair: draws.count(pair) for pair in itertools.permutations(range(3), 2)}
    assert sum(counts.values()) == 3000
    assert all(abs(c / 3000 - 1 / 6) < 0.03 for c in counts.values()), counts  # sd 0.0068
    assert sorted(distinct_choices(4, 4, gen)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="distinct"):
        distinct_choices(2, 3)


def test_mask_modalities_zeroes_exactly_the_masked_ones():
    inputs = [torch.ones(3, 2), torch.full((3, 4), 2.0), torch.full((3, 2), 3.0)]
    out = mask_modalities(inputs, [1])
    assert out[0] is inputs[0] and out[2] is inputs[2]
    assert out[1].shape == (3, 4) and torch.count_nonzero(out[1]) == 0
    assert torch.count_nonzero(torch.cat([o.flatten() for o in out])) == 12
    with pytest.raises(ValueError, match="out of range"):
        mask_modalities(inputs, [3])


# ---------------------------------------------------------------- FAC


def test_fac_loss_matches_numpy():
    rng = np.random.default_rng(0)
    item_id, image, audio = (rng.normal(size=(3, 4)) for _ in range(3))
    chain = [torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)]
    heads = [torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)]
    with torch.no_grad():
        for layer in (*chain, *heads):
            layer.weight.copy_(torch.tensor(rng.normal(size=tuple(layer.weight.shape))))
            layer.bias.copy_(torch.tensor(rng.normal(size=tuple(layer.bias.shape))))
    tau = 0.5
    a1 = np_linear(chain[0], item_id)
    a2 = np_linear(chain[1], a1)  # the chain continues from the first level, no normalisation
    want = np_ce_diag(a1 @ np_linear(heads[0], image).T / tau) + np_ce_diag(
        a2 @ np_linear(heads[1], audio).T / tau
    )
    as_t = [torch.tensor(x, dtype=torch.float32) for x in (item_id, image, audio)]
    got = fac_loss(as_t[0], as_t[1:], chain, heads, tau)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_fac_chain_order_and_widths(tiny):
    assert fac_order(["text", "audio", "video", "image"]) == ["image", "audio", "text", "video"]
    config = make_config("slmrec", sets=[("device", "cpu"), ("embedding_size", 8), ("threads", 1)])
    model = build_model(tiny, config)
    assert model.modalities == ["image", "text"]
    assert [(s.in_features, s.out_features) for s in model.fac_chain] == [(8, 8), (8, 4)]  # text: d/2
    assert [(h.in_features, h.out_features) for h in model.fac_heads] == [(8, 8), (8, 4)]


# ---------------------------------------------------------------- the whole loss by hand


def hand_blocks(model, item_inputs: list[np.ndarray], masks: list[np.ndarray] | None = None) -> np.ndarray:
    """``[U; I]`` per block, side by side: mean of ``Â^l [e_U; x_m]`` over l = 0..3 (dropout masks optional)."""
    adj = np_adjacency(model.n_users, model.n_items)
    users = model.user_embedding.detach().double().numpy()
    ego = np.concatenate([np.tile(users, (1, len(item_inputs))), np.concatenate(item_inputs, 1)])
    layers = [ego]
    for layer in range(3):
        nxt = adj @ layers[-1]
        layers.append(nxt * masks[layer] if masks is not None else nxt)
    return np.mean(layers, axis=0)


def np_inputs(model) -> list[np.ndarray]:
    """``[e_I, Dense_m(X_m / ‖X_m‖)]`` from the raw features of the tiny dataset."""
    out = [model.item_embedding.detach().double().numpy()]
    for m, dense in zip(model.modalities, model.dense, strict=True):
        x = model.raw[m]
        out.append(np_linear(dense, x / np.linalg.norm(x, axis=1, keepdims=True)))
    return out


def build(tiny, task: str):
    config = make_config(
        "slmrec", sets=[("device", "cpu"), ("embedding_size", 8), ("ssl_task", task), ("threads", 1)]
    )
    model = build_model(tiny, config)
    model.raw = {m: tiny.feature(m).double().numpy() for m in model.modalities}
    return model


def np_fuse(model, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nu = model.n_users
    return np_linear(model.user_fusion, blocks[:nu]), np_linear(model.item_fusion, blocks[nu:])


def test_fac_model_loss_and_scores_match_hand_computation(tiny):
    model = build(tiny, "FAC")
    blocks = hand_blocks(model, np_inputs(model))
    user_z, item_z = np_fuse(model, blocks)
    main = np_info_nce(user_z[USERS.numpy()], item_z[ITEMS.numpy()], 0.2)
    items = blocks[model.n_users :][ITEMS.numpy()]
    a1 = np_linear(model.fac_chain[0], items[:, :8])
    a2 = np_linear(model.fac_chain[1], a1)
    ssl = np_ce_diag(a1 @ np_linear(model.fac_heads[0], items[:, 8:16]).T / 0.2)
    ssl += np_ce_diag(a2 @ np_linear(model.fac_heads[1], items[:, 16:]).T / 0.2)
    out = model.loss(Batch(USERS, ITEMS, torch.zeros_like(ITEMS)))
    assert out["main"].item() == pytest.approx(main, rel=1e-5)
    assert out["ssl"].item() == pytest.approx(ssl, rel=1e-5)
    assert out["loss"].item() == pytest.approx(main + 0.1 * ssl, rel=1e-5)
    again = model.loss(Batch(USERS, ITEMS, torch.tensor([3, 0, 1, 0, 2])))  # the negatives are unused
    assert again["loss"].item() == out["loss"].item()
    with model.evaluation():
        scores = model.full_scores(torch.arange(4))
    np.testing.assert_allclose(scores.numpy(), user_z @ item_z.T, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("task", ["FD", "FM", "FD+FM"])
def test_view_tasks_match_hand_computation(tiny, task):
    """Draw order of the model: the two masked blocks (FM), then 3 dropout masks per view (FD)."""
    model = build(tiny, task)
    torch.manual_seed(11)
    got = model.loss(Batch(USERS, ITEMS, torch.zeros_like(ITEMS)))["ssl"].item()
    torch.manual_seed(11)
    inputs = np_inputs(model)
    masked = torch.randperm(3)[:2].tolist() if "FM" in task else [None, None]
    views = []
    for block in masked:
        view_inputs = [np.zeros_like(x) if k == block else x for k, x in enumerate(inputs)]
        masks = None
        if "FD" in task:
            masks = [(torch.rand(8, 24) >= 0.3).double().numpy() / 0.7 for _ in range(3)]
        views.append(np_fuse(model, hand_blocks(model, view_inputs, masks)))
    (u1, i1), (u2, i2) = views
    want = np_info_nce(u1[USERS.numpy()], u2[USERS.numpy()], 0.2)
    want += np_info_nce(i1[ITEMS.numpy()], i2[ITEMS.numpy()], 0.2)
    assert got == pytest.approx(want, rel=1e-5)
    if "FM" in task:
        assert masked[0] != masked[1]


def test_missing_feature_is_a_one_line_error(tiny):
    config = make_config("slmrec", sets=[("device", "cpu"), ("modalities", "audio,image")])
    with pytest.raises(
        TrainError, match=r"model slmrec needs 'audio' features; the dataset has: image, text$"
    ):
        build_model(tiny, config)
