"""MMSSL: the discriminator step (GP, real rows, parameter split), the regenerated graphs against a brute-force
numpy top-k, the reference schedule and attention, GRACE, and training on a real TikTok user subset."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmtrain.data.loader import load_data
from mmtrain.data.sampler import Batch
from mmtrain.errors import TrainError
from mmtrain.experiment import build_model, make_config, prepare
from mmtrain.models import mmssl
from mmtrain.models.losses import grace_loss
from mmtrain.models.mmssl import (
    Discriminator,
    gradient_penalty,
    masked_similarity,
    mean_bipartite,
    modality_attention,
    real_rows,
)
from tests.mmtrain.helpers import (
    random_dataset,
)


def small_model(tmp_path, **sets):
    root = random_dataset(tmp_path / "rand", n_users=30, n_items=40, features=True)
    config = make_config("mmssl", sets=[("device", "cpu"), ("threads", 1), *sets.items()])
    data = prepare(root, config)
    return build_model(data, config), data


def dense_train(data) -> np.ndarray:
    r = np.zeros((data.n_users, data.n_items))
    r[data.train.users.numpy(), data.train.items.numpy()] = 1.0
    return r


def numpy_grace(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
    a = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
    b = z2 / np.linalg.norm(z2, axis=1, keepdims=True)
    refl, between = np.exp(a @ a.T / tau), np.exp(a @ b.T / tau)
    terms = -np.log(np.diag(between) / (refl.sum(1) - np.diag(refl) + between.sum(1)))
    return float(terms.mean())


def test_grace_loss_matches_numpy_and_chunks_agree():
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(9, 5)), rng.normal(size=(9, 5))
    expected = numpy_grace(z1, z2, 0.5)
    a, b = torch.tensor(z1, requires_grad=True), torch.tensor(z2)
    whole = grace_loss(a, b, 0.5)
    assert float(whole.detach()) == pytest.approx(expected, rel=1e-5)
    chunked = grace_loss(a, b, 0.5, chunk=4)
    assert float(chunked.detach()) == pytest.approx(expected, rel=1e-5)
    (g_whole,) = torch.autograd.grad(whole, a)
    (g_chunk,) = torch.autograd.grad(chunked, a)
    torch.testing.assert_close(g_chunk, g_whole)


def test_gradient_penalty_by_hand():
    linear = torch.nn.Linear(2, 1)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[3.0, 4.0]]))
    real, fake = torch.tensor([[1.0, 0.0], [2.0, 2.0]]), torch.tensor([[0.0, 1.0], [0.0, -1.0]])
    alpha = torch.tensor([[0.5], [0.25]])
    gp = gradient_penalty(linear, real, fake, alpha, 0.3)
    assert float(gp.detach()) == pytest.approx(0.3 * (5 - 1) ** 2)  # ∇D = w everywhere, ‖w‖ = 5
    gp.backward()
    # d/dw λ(‖w‖ − 1)² = 2λ(‖w‖ − 1)·w/‖w‖ = 2.4·(0.6, 0.8)
    torch.testing.assert_close(linear.weight.grad, torch.tensor([[1.44, 1.92]]))

    def square(x: torch.Tensor) -> torch.Tensor:
        return (x**2).sum(1)

    # x̂ = (0.5, 0.5) and (0.5, −0.25): ∇ = 2x̂, norms √2 and √1.25
    gp = gradient_penalty(square, real, fake, alpha, 0.3)
    expected = 0.3 * ((math.sqrt(2) - 1) ** 2 + (math.sqrt(1.25) - 1) ** 2) / 2
    assert float(gp.detach()) == pytest.approx(expected, rel=1e-6)


def test_real_rows_and_masked_similarity_match_numpy():
    rng = np.random.default_rng(1)
    seen = (rng.random((3, 7)) < 0.3).astype(np.float32)
    seen[:, 0] = 1.0
    users, items = rng.normal(size=(3, 4)), rng.normal(size=(7, 4))
    sim = (users @ items.T) * (1 - seen)
    sim /= np.linalg.norm(sim, axis=1, keepdims=True)
    got = masked_similarity(torch.tensor(users), torch.tensor(items), torch.tensor(seen, dtype=torch.float64))
    np.testing.assert_allclose(got.numpy(), sim, rtol=1e-6)
    assert (got.numpy()[seen == 1] == 0).all()

    uniform = rng.random((3, 7)).astype(np.float32)
    # exaggerated noise and scale, so each part shows
    logits = seen - 0.01 * np.log(-np.log(uniform + 1e-8) + 1e-8)
    soft = np.exp(logits / 0.5)
    soft /= soft.sum(1, keepdims=True)
    expected = soft + 2.0 * sim
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    got = real_rows(
        torch.tensor(seen), torch.tensor(sim, dtype=torch.float32), torch.tensor(uniform), 0.01, 0.5, 2.0
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-7)
    # reference constants: the softmax part is uniform over the user's train items up to the Gumbel noise
    # (1e-5 / 0.005 = 0.002 per unit of noise), and e^-200 (0 in float32) elsewhere
    ref = real_rows(torch.tensor(seen), torch.zeros(3, 7), torch.tensor(uniform), 1e-5, 0.005, 100.0).numpy()
    np.testing.assert_allclose(ref, seen / np.linalg.norm(seen, axis=1, keepdims=True), atol=2e-2)
    assert (ref[seen == 0] < 1e-30).all()


def test_discriminator_widths_cap_and_output_range():
    full = Discriminator(40, 0.31, 0.5)
    assert [m.out_features for m in full.net if isinstance(m, torch.nn.Linear)] == [10, 5, 1]
    capped = Discriminator(4000, 0.31, 0.5, max_hidden=8)
    assert [m.out_features for m in capped.net if isinstance(m, torch.nn.Linear)] == [8, 4, 1]
    out = full(torch.randn(6, 40))
    assert out.shape == (6,) and ((out >= 0) & (out <= 100)).all()
    assert full.net[1].negative_slope == 0.01
    assert Discriminator(40, 0.0, 0.0, negative_slope=1.0).net[1](torch.tensor([-2.0])).item() == -2.0


def test_auxiliary_step_updates_only_the_discriminator(tmp_path):
    model, data = small_model(tmp_path)
    model.train()
    disc = {id(p) for p in model.discriminator.parameters()}
    main = list(model.main_parameters())
    assert disc and not disc & {id(p) for p in main}
    assert len(main) + len(disc) == len(list(model.parameters()))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    batch = Batch(data.train.users[:50], data.train.items[:50], data.train.items[50:100])
    parts = model.auxiliary_step(batch)
    assert set(parts) == {"d_loss", "d_gp"} and torch.isfinite(parts["d_loss"])
    for name, p in model.named_parameters():
        changed = not torch.equal(before[name], p.detach())
        assert changed == name.startswith("discriminator."), name
    model.discriminator.zero_grad(set_to_none=True)
    out = model.loss(batch)
    assert out["g_adv"].requires_grad and -100 <= float(out["g_adv"].detach()) <= 0
    out["loss"].backward()
    assert all(p.grad is None for p in model.discriminator.parameters())  # frozen for the generator term
    assert all(p.requires_grad for p in model.discriminator.parameters())
    # the adversarial term reaches the feature projections
    model.zero_grad(set_to_none=True)
    out = model.loss(batch)
    (grad,) = torch.autograd.grad(out["g_adv"], model.projections[0].weight)
    assert grad.abs().sum() > 0


def test_operators_are_row_degree_normalised(tmp_path):
    model, data = small_model(tmp_path)
    r = dense_train(data)
    du, di = r.sum(1), r.sum(0)
    np.testing.assert_allclose(model.ui.to_dense().numpy(), r / np.sqrt(du)[:, None], rtol=1e-6)
    expected_iu = np.where(di[:, None] > 0, r.T / np.sqrt(np.maximum(di, 1))[:, None], 0)
    np.testing.assert_allclose(model.iu.to_dense().numpy(), expected_iu, rtol=1e-6)
    op = mean_bipartite(
        torch.tensor([0, 0, 2]), torch.tensor([1, 1, 0]), 3, 2
    )  # a duplicate pair counts twice
    np.testing.assert_allclose(op.to_dense().numpy(), [[0, 2 / math.sqrt(2)], [0, 0], [1, 0]], rtol=1e-6)


def test_regenerated_graph_is_the_numpy_top_k(tmp_path, monkeypatch):
    monkeypatch.setattr(mmssl, "REGEN_BLOCK", 7 * 40)  # 7 users per block: 5 blocks
    model, data = small_model(tmp_path, m_topk_rate=0.08)  # int(40 · 0.08) = 3
    assert model.topk() == 3
    model.train()
    model.regenerate()
    assert model.training
    r = dense_train(data)
    du, di = r.sum(1), r.sum(0)
    for j, name in enumerate(model.modalities):
        w = model.projections[j].weight.detach().double().numpy()
        b = model.projections[j].bias.detach().double().numpy()
        f = data.feature(name).double().numpy() @ w.T + b  # eval mode: no dropout
        u = (r / np.sqrt(du)[:, None]) @ f
        i = (r.T / np.sqrt(np.maximum(di, 1))[:, None]) @ u
        sim = (u @ i.T) * (1 - r)
        top = np.argsort(-sim, axis=1, kind="stable")[:, :3]
        users, items = model.modal_graph(j).numpy()
        np.testing.assert_array_equal(users, np.repeat(np.arange(30), 3))
        got = items.reshape(30, 3)
        assert all(set(got[row]) == set(top[row]) for row in range(30))
        assert (r[users, items] == 0).all()  # train items are masked out
        g_ui, g_iu = model.modal_operators()[j]
        g = np.zeros((30, 40))
        g[users, items] = 1.0
        np.testing.assert_allclose(g_ui.to_dense().numpy(), g / math.sqrt(3), rtol=1e-6)
        dg = g.sum(0)
        np.testing.assert_allclose(
            g_iu.to_dense().numpy(), np.where(dg[:, None] > 0, g.T / np.sqrt(np.maximum(dg, 1))[:, None], 0)
        )
    assert small_model(tmp_path / "b", m_topk_rate=1e-4)[0].topk() == 1  # m_topk_min


def test_epoch_schedule_and_checkpoint_carry_the_graph(tmp_path):
    model, data = small_model(tmp_path, m_topk_rate=0.08, graph_regen="epoch")
    initial = model.modal_graph(0).clone()
    model.train()
    model.on_epoch_start(1, torch.Generator().manual_seed(1))
    assert torch.equal(model.modal_graph(0), initial)  # epoch 1 uses R
    model.on_epoch_start(2, torch.Generator().manual_seed(2))
    assert model.modal_graph(0).shape == (2, 30 * 3)  # k = int(40 · 0.08) = 3 items for each of 30 users
    assert not torch.equal(model.modal_graph(0), initial)
    model.eval()
    with torch.no_grad():
        users_z, items_z = model()
    other, _ = small_model(tmp_path / "b", m_topk_rate=0.08, graph_regen="epoch")
    other.load_state_dict(model.state_dict())
    other.eval()
    assert torch.equal(other.modal_graph(0), model.modal_graph(0))
    with torch.no_grad():
        torch.testing.assert_close(other()[0], users_z)
        torch.testing.assert_close(other()[1], items_z)


def test_reference_schedule_rebuilds_from_batch_zero_then_empties(tmp_path):
    model, data = small_model(tmp_path, graph_regen="reference", m_topk_rate=0.05, dropout=0.0)  # k = 2
    initial = model.modal_graph(1).clone()
    model.train()
    model.on_epoch_start(1, torch.Generator().manual_seed(1))
    batches = [
        Batch(data.train.users[s : s + 40], data.train.items[s : s + 40], data.train.items[s + 1 : s + 41])
        for s in (0, 40, 80)
    ]
    with torch.no_grad():
        feat_u, feat_i = model.feature_side()
    users0 = torch.unique(batches[0].users)
    seen = torch.tensor(dense_train(data), dtype=torch.float32)[users0]
    expected = masked_similarity(feat_u[1][users0], feat_i[1], seen).topk(2, dim=1).indices.reshape(-1)
    model.loss(batches[0])
    assert torch.equal(model.modal_graph(1), initial)
    model.loss(batches[1])
    assert torch.equal(model.modal_graph(1)[0], users0.repeat_interleave(2))
    assert torch.equal(model.modal_graph(1)[1], expected)
    model.loss(batches[2])
    assert model.modal_graph(1).shape == (2, 0)
    with torch.no_grad():
        assert (model.modal_operators()[1][0] @ model.item_embedding).abs().sum() == 0
    # int(N · m_topk_rate) = 0 (as on TikTok and Baby): empty from the second rebuild on, with no minimum
    zero, _ = small_model(tmp_path / "z", graph_regen="reference")
    zero.train()
    zero.on_epoch_start(1, torch.Generator().manual_seed(1))
    zero.loss(batches[0])
    zero.loss(batches[1])
    assert zero.modal_graph(0).shape == (2, 0)


def test_no_regeneration_keeps_the_interaction_graph(tmp_path):
    model, data = small_model(tmp_path, graph_regen="none", dropout=0.0)
    initial = [model.modal_graph(j).clone() for j in range(2)]
    assert torch.equal(initial[0], torch.stack([data.train.users, data.train.items]))
    model.train()
    for epoch in (1, 2, 3):
        model.on_epoch_start(epoch, torch.Generator().manual_seed(epoch))
        model.loss(Batch(data.train.users[:40], data.train.items[:40], data.train.items[1:41]))
    assert all(torch.equal(model.modal_graph(j), initial[j]) for j in range(2))


def literal_reference_attention(views: list[np.ndarray], w_q: np.ndarray, w_cat: np.ndarray, heads: int):
    """The reference ``multi_head_self_attention`` step by step (K built from Q, V = v broadcast)."""
    q = np.stack(views)
    beh, n, d = q.shape
    dh = d // heads
    big_q = (q @ w_q).reshape(beh, n, heads, dh).transpose(2, 0, 1, 3)
    big_k = big_q
    att = (big_q[:, :, None] * big_k[:, None]).sum(-1) / np.sqrt(dh)
    att = np.exp(att)[..., None]
    att = att / att.sum(2, keepdims=True)
    z = (att * q[:, None]).sum(2)
    z = np.concatenate(list(z), -1) @ w_cat
    return z.mean(0)


def test_attention_modes_match_numpy():
    rng = np.random.default_rng(3)
    views = [rng.normal(size=(5, 8)) for _ in range(3)]
    w_q, w_k, w_cat = rng.normal(size=(8, 8)), rng.normal(size=(8, 8)), rng.normal(size=(16, 8))
    tv = [torch.tensor(v) for v in views]
    args = (torch.tensor(w_q), torch.tensor(w_k), torch.tensor(w_cat), 2)
    ref = modality_attention(tv, *args, mode="reference")
    np.testing.assert_allclose(ref.numpy(), literal_reference_attention(views, w_q, w_cat, 2), rtol=1e-10)
    paper = modality_attention(tv, *args, mode="paper").numpy()
    expected = np.zeros((3, 5, 8))
    for m in range(3):
        for node in range(5):
            heads = []
            for h in range(2):
                sl = slice(4 * h, 4 * h + 4)
                q = (views[m][node] @ w_q)[sl]
                scores = np.array([q @ (views[k][node] @ w_k)[sl] / 2.0 for k in range(3)])
                a = np.exp(scores - scores.max())
                a /= a.sum()
                heads.append(sum(a[k] * views[k][node] for k in range(3)))
            expected[m, node] = np.concatenate(heads) @ w_cat
    np.testing.assert_allclose(paper, expected.mean(0), rtol=1e-10)
    assert not np.allclose(paper, ref.numpy())


def test_config_errors_are_one_line(tmp_path):
    plain = load_data(random_dataset(tmp_path / "plain", n_users=20, n_items=15))
    with pytest.raises(TrainError, match=r"model mmssl needs item features .*; the dataset has none$") as err:
        build_model(plain, make_config("mmssl", sets=[("device", "cpu")]))
    assert "\n" not in str(err.value)
    rich = load_data(random_dataset(tmp_path / "rich", n_users=20, n_items=15, features=True))
    with pytest.raises(TrainError, match=r"needs 'text' features; the dataset has: audio, image"):
        build_model(rich, make_config("mmssl", sets=[("device", "cpu"), ("modalities", "text")]))
    with pytest.raises(TrainError, match=r"head_num=3 must divide embedding_size=64"):
        build_model(rich, make_config("mmssl", sets=[("device", "cpu"), ("head_num", 3)]))
