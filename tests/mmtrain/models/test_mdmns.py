"""MDMNS and the shared diffusion module: schedule, q_sample, SNR weights, reverse chain and denoiser against
hand-computed values; multi-level negatives and full-set contrast against direct computations; the regenerated
modality graphs against numpy; the view equations against dense matrices; training on TikTok."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmtrain.data.loader import load_data
from mmtrain.data.sampler import Batch
from mmtrain.errors import TrainError
from mmtrain.experiment import build_model, make_config, prepare
from mmtrain.models.diffusion import Denoiser, GaussianDiffusion, make_betas, timestep_embedding
from mmtrain.models.mdmns import full_set_contrast, multilevel_contrast, noise_levels
from mmtrain.trainer import Trainer
from tests.mmtrain.helpers import (
    random_dataset,
)

SMALL = [("device", "cpu"), ("threads", 1), ("seed", 3), ("embedding_size", 8), ("dims", [6]), ("lr", 1e-2)]


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    return random_dataset(tmp_path_factory.mktemp("data") / "rand", n_users=30, n_items=25, features=True)


def small_model(root, *sets):
    config = make_config("mdmns", sets=[*SMALL, *sets])
    data = prepare(root, config)
    return build_model(data, config), data, config


# diffusion schedule (mmtrain/models/diffusion.py)


def test_schedule_matches_hand_computation():
    # scale 1, variances linspace(0.1, 0.3, 3) = 1 - [0.9, 0.8, 0.7]: betas 0.1, 1 - 8/9, 1 - 7/8
    free = GaussianDiffusion(1.0, 0.1, 0.3, 3, beta_fixed=False)
    torch.testing.assert_close(free.betas, torch.tensor([0.1, 1 / 9, 1 / 8], dtype=torch.float64))
    torch.testing.assert_close(free.alphas_cumprod, torch.tensor([0.9, 0.8, 0.7], dtype=torch.float64))
    torch.testing.assert_close(free.alphas_cumprod_prev, torch.tensor([1.0, 0.9, 0.8], dtype=torch.float64))
    # c1_1 = β_1 √ᾱ_0 / (1 − ᾱ_1), c2_1 = (1 − ᾱ_0) √(1 − β_1) / (1 − ᾱ_1); at t = 0: c1 = 1, c2 = 0
    torch.testing.assert_close(float(free.posterior_mean_coef1[1]), (1 / 9) * math.sqrt(0.9) / 0.2)
    torch.testing.assert_close(float(free.posterior_mean_coef2[1]), 0.1 * math.sqrt(8 / 9) / 0.2)
    assert (
        float(free.posterior_mean_coef1[0]) == pytest.approx(1.0) and float(free.posterior_mean_coef2[0]) == 0
    )
    # the reference fixes β_0 = 1e-4 (beta_fixed): ᾱ = 0.9999·[1, 8/9, 7/9]
    fixed = GaussianDiffusion(1.0, 0.1, 0.3, 3)
    torch.testing.assert_close(
        fixed.alphas_cumprod, 0.9999 * torch.tensor([1, 8 / 9, 7 / 9], dtype=torch.float64)
    )
    # published setting: s = 0.1, [1e-4, 2e-2], 5 steps -> variances 1e-5 … 2e-3 (step 4.975e-4)
    betas = make_betas(0.1, 1e-4, 0.02, 5, beta_fixed=False).numpy()
    variance = 1e-5 + 4.975e-4 * np.arange(5)
    np.testing.assert_allclose(np.cumprod(1 - betas), 1 - variance, rtol=1e-12)
    with pytest.raises(ValueError):
        make_betas(0.0, 1e-4, 0.02, 5)


def test_q_sample_and_snr_weights():
    d = GaussianDiffusion(1.0, 0.1, 0.3, 3, beta_fixed=False)
    x0 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    noise = torch.tensor([[0.5, -1.0], [2.0, 0.0], [0.0, 0.0]])
    t = torch.tensor([2, 0, 1])
    expected = torch.tensor(
        [
            [math.sqrt(0.7) + math.sqrt(0.3) * 0.5, -math.sqrt(0.3)],
            [math.sqrt(0.1) * 2.0, math.sqrt(0.9)],
            [math.sqrt(0.8), math.sqrt(0.8)],
        ]
    )
    torch.testing.assert_close(d.q_sample(x0, t, noise), expected)
    # SNR = ᾱ/(1 − ᾱ) = [9, 4, 7/3]; weights SNR(t−1) − SNR(t) with 1 at t = 0
    torch.testing.assert_close(d.snr(torch.arange(3)), torch.tensor([9.0, 4.0, 7 / 3], dtype=torch.float64))
    torch.testing.assert_close(
        d.loss_weights(torch.tensor([0, 1, 2, 1])), torch.tensor([1.0, 5.0, 5 / 3, 5.0])
    )


def test_training_loss_is_the_snr_weighted_reconstruction_error():
    d = GaussianDiffusion(1.0, 0.1, 0.3, 3, beta_fixed=False)
    x0 = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    noise = torch.tensor([[0.1, 0.2, -0.3], [1.0, -1.0, 0.5]])
    t = torch.tensor([1, 0])
    seen = {}

    def denoiser(x, steps):
        seen["x"], seen["t"] = x, steps
        return 0.5 * x

    loss, x0_hat = d.training_losses(denoiser, x0, t, noise)
    torch.testing.assert_close(seen["x"], d.q_sample(x0, t, noise))
    assert torch.equal(seen["t"], t)
    mse = ((x0 - 0.5 * d.q_sample(x0, t, noise)) ** 2).mean(1)
    torch.testing.assert_close(loss, torch.tensor([5.0, 1.0]) * mse)
    torch.testing.assert_close(x0_hat, 0.5 * seen["x"])


def test_p_sample_runs_every_step_down_to_zero():
    d = GaussianDiffusion(1.0, 0.1, 0.3, 3, beta_fixed=False)
    calls = []

    def denoiser(x, t, dropout=True):
        calls.append((int(t[0]), dropout))
        return x + 1.0

    x0 = torch.tensor([[1.0, 0.0]])
    out = d.p_sample(denoiser, x0)
    assert calls == [(2, False), (1, False), (0, False)]
    x = x0.double()
    for i in (2, 1, 0):
        x = float(d.posterior_mean_coef1[i]) * (x + 1.0) + float(d.posterior_mean_coef2[i]) * x
    torch.testing.assert_close(out, x.float())
    # at t = 0 the mean is the denoiser output itself (c1 = 1, c2 = 0)
    calls.clear()
    torch.testing.assert_close(GaussianDiffusion(1.0, 0.1, 0.3, 1).p_sample(denoiser, x0), x0 + 1.0)


def test_timestep_embedding_and_denoiser_layout():
    # dim 4: ω = [1, 10000^(-1/2) = 0.01]; dim 5 pads a zero
    emb = timestep_embedding(torch.tensor([3, 0]), 4)
    expected = torch.tensor(
        [[math.cos(3), math.cos(0.03), math.sin(3), math.sin(0.03)], [1.0, 1.0, 0.0, 0.0]]
    )
    torch.testing.assert_close(emb, expected)
    assert timestep_embedding(torch.tensor([2]), 5)[0, 4] == 0
    net = Denoiser(50, [1000], emb_size=10)
    shapes = [tuple(layer.weight.shape) for layer in (*net.in_layers, *net.out_layers)]
    assert shapes == [(1000, 60), (50, 1000)]  # N + 10 -> 1000 -> N
    deep = Denoiser(50, [8, 4], emb_size=10)
    assert [tuple(la.weight.shape) for la in (*deep.in_layers, *deep.out_layers)] == [
        (4, 60),
        (8, 4),
        (4, 8),
        (50, 4),
    ]
    x, t = torch.rand(3, 50), torch.tensor([0, 1, 4])
    assert torch.equal(net(x, t, dropout=False), net(x, t, dropout=False))
    h = torch.tanh(net.in_layers[0](torch.cat([x, net.emb_layer(timestep_embedding(t, 10))], 1)))
    torch.testing.assert_close(net(x, t, dropout=False), net.out_layers[0](h))


# contrastive losses (mmtrain/models/mdmns.py)


def numpy_contrast(a: np.ndarray, b: np.ndarray, targets: np.ndarray, tau: float) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    logits = a @ b.T / tau
    nume = np.exp(logits[np.arange(len(a)), targets])
    return float(np.mean(-np.log(nume / np.exp(logits).sum(1))))


def test_full_set_contrast_matches_numpy_and_chunking():
    gen = torch.Generator().manual_seed(0)
    e1, e2 = torch.randn(9, 4, generator=gen), torch.randn(9, 4, generator=gen)
    nodes = torch.tensor([2, 2, 7, 0])  # DiffMM: batch rows of view 1 against every row of view 2
    value = full_set_contrast(e1[nodes], e2, nodes, 0.5)
    assert value.item() == pytest.approx(
        numpy_contrast(e1[nodes].numpy(), e2.numpy(), nodes.numpy(), 0.5), rel=1e-5
    )
    a1, a2 = e1.clone().requires_grad_(), e1.clone().requires_grad_()
    targets = torch.arange(9)
    whole = full_set_contrast(a1, e2, targets, 0.2)
    chunked = full_set_contrast(a2, e2, targets, 0.2, chunk=4)
    assert whole.item() == pytest.approx(numpy_contrast(e1.numpy(), e2.numpy(), np.arange(9), 0.2), rel=1e-5)
    torch.testing.assert_close(whole, chunked)
    whole.backward()
    chunked.backward()
    torch.testing.assert_close(a1.grad, a2.grad)


def test_noise_levels_and_multilevel_negatives():
    assert noise_levels(5) == [0, 0, 1, 2]  # int(5/10), int(5/8), int(5/4), int(5/2)
    assert noise_levels(20) == [2, 2, 5, 10]
    assert (
        noise_levels(1) == [0, 0, 0, 0]
        and noise_levels(7) == [0, 0, 1, 3]
        and noise_levels(40) == [4, 5, 10, 20]
    )
    items = torch.randn(7, 3, generator=torch.Generator().manual_seed(1)).requires_grad_()
    levels = [0, 1, 2]
    value = multilevel_contrast(items, levels, 0.5, generator=torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    x = items.detach().numpy()
    expected = 0.0
    for sigma in levels:  # item i's own noisy copy is the positive, the other items' copies the negatives
        copy = x + sigma * torch.randn(7, 3, generator=gen).numpy()
        expected += numpy_contrast(x, copy, np.arange(7), 0.5)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    # σ = 0: the copy is the item itself (InfoNCE of the items against themselves)
    zero = multilevel_contrast(items, [0], 0.5)
    assert zero.item() == pytest.approx(numpy_contrast(x, x, np.arange(7), 0.5), rel=1e-5)
    # the copies carry no gradient: only the anchor side reaches the items
    value.backward()
    anchor = items.detach().clone().requires_grad_()
    gen = torch.Generator().manual_seed(5)
    copies = [items.detach() + s * torch.randn(7, 3, generator=gen) for s in levels]
    sum(full_set_contrast(anchor, c, torch.arange(7), 0.5) for c in copies).backward()
    torch.testing.assert_close(items.grad, anchor.grad)


# the regenerated modality graphs


def test_regenerated_graphs_match_numpy(small_root):
    model, data, _ = small_model(small_root, ("rebuild_k", 3), ("gen_block", 7), ("keepRate", 1.0))
    m, n = data.n_users, data.n_items
    dense_train = np.zeros((m, n), dtype=np.float32)
    dense_train[data.train.users.numpy(), data.train.items.numpy()] = 1
    np.testing.assert_array_equal(model.train_rows(torch.arange(m)).numpy(), dense_train)
    model.regenerate(None)  # keepRate 1: nothing is drawn
    graphs = model.modal_graphs()
    for k, denoiser in enumerate(model.denoisers):
        denoised = model.diffusion.p_sample(
            denoiser, torch.from_numpy(dense_train)
        ).numpy()  # all users at once
        top = np.argsort(-denoised, axis=1, kind="stable")[:, :3]
        assert [set(r) for r in top] == [set(r) for r in model.top_items[k].numpy()]
        a = np.eye(m + n)
        rows = np.repeat(np.arange(m), 3)
        a[rows, m + top.reshape(-1)] = 1
        a[m + top.reshape(-1), rows] = 1
        d = a.sum(1) ** -0.5
        np.testing.assert_allclose(graphs[k].to_dense().numpy(), d[:, None] * a * d[None, :], rtol=1e-6)
    # edge dropout: entries kept with probability keepRate and divided by it; drawn from the given generator
    model.config["keepRate"] = 0.5
    with pytest.raises(TrainError, match="needs the trainer's generator"):
        model.regenerate(None)
    model.regenerate(torch.Generator().manual_seed(1))
    full = graphs[0].to_dense()
    dropped = model.modal_graphs()[0].to_dense()
    kept = dropped != 0
    assert bool((full[kept] != 0).all())
    torch.testing.assert_close(dropped[kept], full[kept] / 0.5)
    fraction = int(kept.sum()) / int((full != 0).sum())
    assert 0.3 < fraction < 0.7 and model.edge_keep.shape == (2, 2 * 30 * 3 + 30 + 25)
    mask = model.edge_keep.clone()
    model.regenerate(torch.Generator().manual_seed(1))
    assert torch.equal(model.edge_keep, mask)
    model.regenerate(torch.Generator().manual_seed(2))
    assert not torch.equal(model.edge_keep, mask)


def test_views_follow_the_equations(small_root):
    model, data, config = small_model(small_root, ("ui_layers", 2), ("trans", 1), ("keepRate", 1.0))
    m = data.n_users
    adj = data.ui_adjacency("sym_self").to_dense()
    u, i = model.user_embedding, model.item_embedding
    ego = torch.cat([u, i])

    def two_hop(x):
        first = adj @ torch.cat([u, x])
        return first + adj @ torch.cat([first[:m], i])

    feats = [proj(x) for proj, x in zip(model.projections, model.features(), strict=True)]  # trans 1: Linear
    modal = [
        two_hop(F.normalize(f)) + 0.2 * g.to_dense() @ ego
        for f, g in zip(feats, model.modal_graphs(), strict=True)
    ]
    w = torch.softmax(model.modal_weight, 0)
    fused = two_hop(F.normalize((w[0] * modal[0] + w[1] * modal[1])[m:])) + 0.2 * adj @ ego

    def readout(v):
        return v + adj @ v + adj @ adj @ v + 0.5 * F.normalize(v)

    expected = [readout(v) for v in (fused, *modal)]
    got = model.views()
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with model.evaluation():
        scores = model.full_scores(torch.tensor([0, 4]))
    summed = sum(v[:m][[0, 4]] @ v[m:].T for v in expected)
    torch.testing.assert_close(scores, summed, rtol=1e-5, atol=1e-5)
    cl_views = model.contrast_views()
    for view, f, g in zip(cl_views, feats, model.modal_graphs(), strict=True):
        c = g.to_dense() @ torch.cat([u, F.normalize(f)])
        torch.testing.assert_close(view, c + adj @ c + adj @ adj @ c, rtol=1e-5, atol=1e-6)


def test_denoisers_are_trained_only_by_the_auxiliary_step(small_root):
    model, data, _ = small_model(small_root, ("diff_every", 3))
    main = {id(p) for p in model.main_parameters()}
    denoise = {id(p) for p in model.denoisers.parameters()}
    assert main.isdisjoint(denoise) and main | denoise == {id(p) for p in model.parameters()}
    assert round(len(data.train) / data.n_users) == 6 and small_model(small_root)[0].diff_every == 6
    users = data.train.users[:40]
    batch = Batch(users, data.train.items[:40], data.train.items[:40], torch.Generator().manual_seed(0))
    x0 = model.train_rows(torch.unique(users))

    def fixed_draw_loss():
        with torch.no_grad():
            diff, gc = model.denoiser_losses(x0, torch.Generator().manual_seed(11))
        return float(diff + 0.1 * gc)

    before_loss = fixed_draw_loss()
    main_before = [p.detach().clone() for p in model.main_parameters()]
    den_before = [p.detach().clone() for p in model.denoisers.parameters()]
    model.on_epoch_start(1, torch.Generator().manual_seed(1))
    first = model.auxiliary_step(batch)
    assert set(first) == {"diff", "gc"}
    assert all(not torch.equal(a, b) for a, b in zip(den_before, model.denoisers.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(main_before, model.main_parameters(), strict=True))
    assert all(p.grad is None for p in model.main_parameters())
    after_one = [p.detach().clone() for p in model.denoisers.parameters()]
    assert model.auxiliary_step(batch) is first and model.auxiliary_step(batch) is first  # batches 2, 3 skip
    assert all(torch.equal(a, b) for a, b in zip(after_one, model.denoisers.parameters(), strict=True))
    assert model.auxiliary_step(batch) is not first  # batch 4 trains again
    for _ in range(60):
        model._aux_count = 0
        model.auxiliary_step(batch)
    assert fixed_draw_loss() < 0.5 * before_loss


def test_state_dict_carries_the_generated_graphs(small_root):
    model, data, config = small_model(small_root)
    model.regenerate(torch.Generator().manual_seed(4))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with model.evaluation():
        scores = model.full_scores(torch.arange(5))
    other = build_model(data, config)
    assert not bool(other.generated)
    other.load_state_dict(state)
    with other.evaluation():
        torch.testing.assert_close(other.full_scores(torch.arange(5)), scores)


def test_missing_feature_and_bad_values_are_one_line_errors(tmp_path, small_root):
    plain = load_data(random_dataset(tmp_path / "plain", n_users=20, n_items=15))
    with pytest.raises(TrainError, match=r"model mdmns needs item features .*the dataset has none$") as err:
        build_model(plain, make_config("mdmns", sets=[("device", "cpu")]))
    assert "\n" not in str(err.value)
    rich = load_data(small_root)
    with pytest.raises(TrainError, match=r"needs 'text' features; the dataset has: audio, image"):
        build_model(rich, make_config("mdmns", sets=[("device", "cpu"), ("modalities", "image,text")]))
    with pytest.raises(TrainError, match=r"^cl_method=2: must be in \[0, 1\]$"):
        make_config("mdmns", sets=[*SMALL, ("cl_method", 2)])
    with pytest.raises(TrainError, match=r"^rebuild_k=26: must be at most the number of items \(25\)$"):
        build_model(rich, make_config("mdmns", sets=[*SMALL, ("rebuild_k", 26)]))


@pytest.mark.parametrize("cl_method", [0, 1])
def test_full_loss_decreases_on_synthetic_data(small_root, cl_method):
    config = make_config(
        "mdmns", sets=[*SMALL, ("cl_method", cl_method), ("batch_size", 64), ("cl_weight", 0.1)]
    )
    data = prepare(small_root, config)
    trainer = Trainer(build_model(data, config), data, config, progress=False)
    parts = [trainer.train_epoch(e) for e in range(1, 6)]
    values = [p["loss"] for p in parts]
    # the contrastive term is noisy on 30 users: the trend, not every step, must go down
    assert values[-1] < 0.85 * values[0] and max(values[1:]) < values[0], values
    assert all(p["cl"] > 0 for p in parts) and {"diff", "gc", "bpr", "reg"} <= set(parts[0])
