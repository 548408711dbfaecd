"""MMSSL's factored discriminator rows (issue 15 speed-up) give the same rows, losses and gradients as the dense
computation they replace: masked similarities, real rows, the discriminator loss with its gradient penalty (both
norm paths) and the generator's adversarial term."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mmtrain.models.mmssl import (
    Discriminator,
    discriminator_loss,
    first_layer,
    gradient_penalty,
    masked_similarity,
    real_rows,
)
from mmtrain.models.mmssl_rows import FactoredRows, masked_factors, real_factors, sparse_softmax_exact


def case(n_users: int = 12, n_items: int = 60, dim: int = 8, seed: int = 0):
    """Random embeddings and a seen mask with 1-6 training items per user (as ``rows_of`` orders them)."""
    rng = np.random.default_rng(seed)
    seen = np.zeros((n_users, n_items), dtype=np.float32)
    for u in range(n_users):
        seen[u, rng.choice(n_items, size=rng.integers(1, 7), replace=False)] = 1.0
    rows, cols = np.nonzero(seen)
    users = torch.tensor(rng.normal(size=(n_users, dim)), dtype=torch.float32)
    items = torch.tensor(rng.normal(size=(n_items, dim)), dtype=torch.float32)
    return users, items, torch.tensor(seen), torch.tensor(rows), torch.tensor(cols)


def test_masked_factors_are_the_dense_masked_similarity():
    users, items, seen, rows, cols = case()
    factors = masked_factors(users, items, rows, cols)
    dense = masked_similarity(users, items, seen)
    torch.testing.assert_close(factors.dense(), dense, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(factors.sq_norm(), torch.ones(len(users)), rtol=1e-5, atol=1e-6)
    weight = torch.randn(5, items.shape[0])
    torch.testing.assert_close(factors.project(weight), dense @ weight.T, rtol=1e-4, atol=1e-5)


def test_real_factors_are_the_dense_real_rows_at_the_published_constants():
    users, items, seen, rows, cols = case(seed=1)
    assert sparse_softmax_exact(1e-5, 0.005) and not sparse_softmax_exact(1e-5, 0.5)
    uniform = torch.rand(seen.shape, generator=torch.Generator().manual_seed(3))
    ui = masked_factors(users, items, rows, cols)
    dense = real_rows(seen, ui.dense(), uniform, 1e-5, 0.005, 100.0)
    factored = real_factors(ui, uniform[rows, cols], 1e-5, 0.005, 100.0)
    torch.testing.assert_close(factored.dense(), dense, rtol=1e-5, atol=1e-7)


def dense_discriminator_loss(disc, fake, real, alpha, rng):
    """The computation the factored one replaced (MMSSL.auxiliary_step before issue 15)."""

    def d(x):
        return disc(x, rng)

    real = real.repeat(len(fake), 1)
    fake = torch.cat(fake)
    penalty = gradient_penalty(d, real, fake, alpha, 0.3)
    return -d(real).mean() + d(fake).mean() + penalty


# 24 rows (12 users, 2 modalities): h1 = 4 takes the Gram path, h1 = 120 / 4 = 30 the direct one
@pytest.mark.parametrize(("n_items", "max_hidden"), [(60, 4), (120, 0)])
def test_discriminator_loss_and_gradients_equal_the_dense_ones(n_items, max_hidden):
    users, items, seen, rows, cols = case(n_users=12, n_items=n_items)
    image, audio = users * 0.5, users.flip(1)
    fake_f = [masked_factors(u, items, rows, cols) for u in (image, audio)]
    ui = masked_factors(users, items * 2, rows, cols)
    uniform = torch.rand(seen.shape, generator=torch.Generator().manual_seed(4))
    real_f = real_factors(ui, uniform[rows, cols], 1e-5, 0.005, 100.0)
    disc = Discriminator(n_items, 0.31, 0.5, max_hidden=max_hidden, negative_slope=1.0)
    twin = copy.deepcopy(disc)
    alpha = torch.rand(24, 1, generator=torch.Generator().manual_seed(5))

    new, _ = discriminator_loss(disc, fake_f, real_f, alpha, 1.0, 0.3, torch.Generator().manual_seed(9))
    new.backward()
    old = dense_discriminator_loss(
        twin, [f.dense() for f in fake_f], real_f.dense(), alpha, torch.Generator().manual_seed(9)
    )
    old.backward()
    assert float(new.detach()) == pytest.approx(float(old.detach()), rel=1e-5)
    # the penalty's gradients reach 1e4-1e5; the biases before a BatchNorm get 0 up to that scale's rounding
    scale = max(float(q.grad.abs().max()) for q in twin.parameters())
    for (name, p), q in zip(disc.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_generator_term_gradients_equal_the_dense_ones():
    users, items, seen, rows, cols = case(seed=2)
    disc = Discriminator(60, 0.31, 0.5, negative_slope=1.0)
    u1, i1 = users.clone().requires_grad_(), items.clone().requires_grad_()
    u2, i2 = users.clone().requires_grad_(), items.clone().requires_grad_()
    hidden = torch.cat([first_layer(disc, masked_factors(u, i1, rows, cols)) for u in (u1, 2 * u1)])
    new = -disc.from_hidden(hidden, torch.Generator().manual_seed(1)).mean()
    dense = torch.cat([masked_similarity(u, i2, seen) for u in (u2, 2 * u2)])
    old = -disc(dense, torch.Generator().manual_seed(1)).mean()
    new.backward()
    old.backward()
    assert float(new) == pytest.approx(float(old), rel=1e-5)
    torch.testing.assert_close(u1.grad, u2.grad, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(i1.grad, i2.grad, rtol=1e-3, atol=1e-5)


def test_model_uses_factored_real_rows_only_where_the_softmax_is_exactly_sparse(tmp_path):
    from tests.mmtrain.models.test_mmssl import small_model

    model, data = small_model(tmp_path)
    model.train()
    users = torch.unique(data.train.users)[:10]
    with torch.no_grad():
        out = model._outputs()
    gen = torch.Generator().manual_seed(0)
    factored = model.real_rows_of(out, users, gen)
    assert isinstance(factored, FactoredRows)
    rows, items = data.train.rows_of(users)
    assert torch.equal(factored.rows, rows) and torch.equal(factored.cols, items)  # the softmax's support
    model.config["real_data_tau"] = 0.5  # e^{-2} off the training items: not negligible, dense rows
    dense = model.real_rows_of(out, users, gen)
    assert isinstance(dense, torch.Tensor) and dense.shape == (10, data.n_items)
