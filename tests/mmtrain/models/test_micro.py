"""MICRO: per-modality learned graphs and the fusion against numpy, the GRACE contrastive loss by hand
(chunked = unchunked), a one-line error for a missing feature, training on a real TikTok subset, cold start."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mmprep.split.cold_dataset import add_cold_split
from mmtrain.cli import main
from mmtrain.data.loader import load_data
from mmtrain.errors import TrainError
from mmtrain.experiment import build_model, make_config
from mmtrain.models.losses import grace_loss
from mmtrain.trainer import Trainer
from tests.mmtrain.helpers import (
    SUBSET_ITEMS,
    model_for,
    random_dataset,
    sym_knn,
    sym_norm,
    tiktok_subset,
)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return random_dataset(tmp_path_factory.mktemp("data") / "rand", n_users=30, n_items=25, features=True)


def numpy_grace(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
    a = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
    b = z2 / np.linalg.norm(z2, axis=1, keepdims=True)
    refl, between = np.exp(a @ a.T / tau), np.exp(a @ b.T / tau)
    losses = -np.log(np.diag(between) / (refl.sum(1) - np.diag(refl) + between.sum(1)))
    return float(losses.mean())


def test_grace_loss_by_hand():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    z2 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    # tau 0.5: cosines 1 -> e^2, 1/sqrt(2) -> e^sqrt(2), 0 -> e^0
    e, r = np.exp, np.sqrt(2)
    row0 = np.log(1 + e(r) + e(2) + e(2) + 1) - 2  # positive cos(z1_0, z2_0) = 1
    row1 = np.log(1 + e(r) + 1 + 1 + e(2))  # positive cos(z1_1, z2_1) = 0
    row2 = np.log(2 * e(r) + 3 * e(r)) - r  # every cosine of z1_2 is 1/sqrt(2)
    expected = (row0 + row1 + row2) / 3
    assert grace_loss(z1, z2, tau=0.5).item() == pytest.approx(expected, rel=1e-6)  # float32
    assert numpy_grace(z1.numpy(), z2.numpy(), 0.5) == pytest.approx(expected, rel=1e-12)
    assert grace_loss(z2, z1, tau=0.5).item() != pytest.approx(expected)  # one direction only
    sample = grace_loss(z1, z2, tau=0.5, anchors=torch.tensor([2, 0]))  # anchors 2 and 0, against all rows
    assert sample.item() == pytest.approx((row0 + row2) / 2, rel=1e-6)


def test_chunked_grace_equals_unchunked_with_gradients():
    gen = torch.Generator().manual_seed(0)
    z1 = torch.randn(23, 8, generator=gen, dtype=torch.float64).requires_grad_()
    z2 = torch.randn(23, 8, generator=gen, dtype=torch.float64).requires_grad_()
    whole = grace_loss(z1, z2, tau=0.5)
    chunked = grace_loss(z1, z2, tau=0.5, chunk=5)
    assert grace_loss(z1, z2, tau=0.5, anchors=torch.arange(23), chunk=5).item() == pytest.approx(
        whole.item()
    )
    assert whole.item() == pytest.approx(numpy_grace(z1.detach().numpy(), z2.detach().numpy(), 0.5), rel=1e-6)
    torch.testing.assert_close(whole, chunked)
    for g1, g2 in zip(
        torch.autograd.grad(whole, (z1, z2)), torch.autograd.grad(chunked, (z1, z2)), strict=True
    ):
        torch.testing.assert_close(g1, g2)


def test_modality_graphs_and_fusion_equal_numpy(small):
    model, data, _ = model_for(small, "micro", ("knn_k", 4))
    model.eval()
    with torch.no_grad():
        views = model.modality_embeddings()
        fused = model.fuse(views)
    ids = model.item_embedding.detach().double().numpy()
    for m, (x, projection, view) in enumerate(
        zip(
            (data.feature(n).double().numpy() for n in ("audio", "image")),
            model.projections,
            views,
            strict=True,
        )
    ):
        projected = (
            x @ projection.weight.detach().double().numpy().T + projection.bias.detach().double().numpy()
        )
        adjacency = 0.1 * sym_norm(sym_knn(projected, 4)) + 0.9 * sym_norm(sym_knn(x, 4))
        np.testing.assert_allclose(view.numpy(), adjacency @ ids, rtol=1e-5, atol=1e-6, err_msg=str(m))
    w1, b1 = (t.detach().double().numpy() for t in (model.query[0].weight, model.query[0].bias))
    w2 = model.query[2].weight.detach().double().numpy()
    scores = np.stack([np.tanh(v.double().numpy() @ w1.T + b1) @ w2.T for v in views], 1)[..., 0]
    alpha = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    expected = alpha[:, 0:1] * views[0].double().numpy() + alpha[:, 1:2] * views[1].double().numpy()
    np.testing.assert_allclose(fused.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_missing_feature_is_a_one_line_error(tmp_path):
    plain = load_data(random_dataset(tmp_path / "plain", n_users=20, n_items=15))
    with pytest.raises(
        TrainError, match=r"plain: model micro needs item features .*; the dataset has none$"
    ) as err:
        build_model(plain, make_config("micro", sets=[("device", "cpu")]))
    assert "\n" not in str(err.value)
    rich = load_data(random_dataset(tmp_path / "rich", n_users=20, n_items=15, features=True))
    with pytest.raises(TrainError, match=r"needs 'text' features; the dataset has: audio, image$"):
        build_model(rich, make_config("micro", sets=[("device", "cpu"), ("modalities", "image,text")]))
    with pytest.raises(TrainError, match=r"^cl_anchors=-5: must be >= 0 \(0 = every item, the reference\)$"):
        build_model(rich, make_config("micro", sets=[("device", "cpu"), ("cl_anchors", -5)]))


@pytest.mark.parametrize("anchors", [0, 256])
def test_trains_on_real_tiktok_subset_with_decreasing_loss(tmp_path, anchors):
    root = tiktok_subset(tmp_path / "tiktok800")
    model, data, config = model_for(root, "micro", ("threads", 1), ("cl_anchors", anchors))
    if anchors:
        drawn = model.contrast_anchors()
        assert drawn.shape == (anchors,) and drawn.unique().numel() == anchors
        assert 0 <= int(drawn.min()) and int(drawn.max()) < SUBSET_ITEMS
    else:
        assert model.contrast_anchors() is None
    trainer = Trainer(model, data, config, progress=False)
    parts = [trainer.train_epoch(e) for e in range(1, 5)]
    values = [p["loss"] for p in parts]
    assert values[0] < 0.6932 + 0.03 * 2 * np.log(2 * SUBSET_ITEMS)
    assert all(b < a for a, b in zip(values, values[1:], strict=False)), values
    assert parts[-1]["cl"] < parts[0]["cl"], parts
    with model.evaluation():
        scores = model.full_scores(torch.arange(5))
    assert scores.shape == (5, SUBSET_ITEMS) and torch.isfinite(scores).all()


def test_cold_start_run_reports_cold_metrics(tmp_path):
    root = random_dataset(tmp_path / "rand", n_users=90, n_items=50, features=True)
    add_cold_split(root, cold_ratio=0.2, seed=123)
    args = ["-q", "run", "--model", "micro", "--dataset", str(root), "--out", str(tmp_path / "runs")]
    args += ["--device", "cpu", "--split", "cold", "--set", "cold_candidates=cold"]
    for key in ("threads=1", "batch_size=64", "tensorboard=false", "epochs=2", "eval_every=1", "knn_k=4"):
        args += ["--set", key]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    final = json.loads(result.stdout)
    assert final["split"] == "cold"
    for role in ("val", "test"):
        assert 0.0 <= final[role]["ndcg@10"] <= 1.0
        assert final[role]["recall@10"] == 1.0  # 5 cold candidates: every top-10 holds all of them
    data = load_data(root, split="cold")
    cold = torch.cat([data.cold_items["val"], data.cold_items["test"]])
    assert not torch.isin(data.train.items, cold).any()  # cold items are scored from their graph neighbours
