"""The blockwise GRACE loss (hand-written gradients) against the autograd formula it replaces and by hand:
equal values and gradients, with all anchors or a sample, one block or several, and MICRO's loss with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmtrain.data.sampler import Batch
from mmtrain.models.grace import grace_loss_blockwise
from mmtrain.models.losses import grace_loss
from tests.mmtrain.helpers import model_for, random_dataset


def _pair(n: int, d: int, seed: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=gen, dtype=dtype).requires_grad_()
    z2 = torch.randn(n, d, generator=gen, dtype=dtype).requires_grad_()
    return z1, z2


def test_blockwise_grace_by_hand():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    e, r = np.exp, np.sqrt(2)  # tau 0.5: cosines 1 -> e^2, 1/sqrt(2) -> e^sqrt(2), 0 -> e^0
    rows = [np.log(1 + e(r) + e(2) + e(2) + 1) - 2, np.log(1 + e(r) + 1 + 1 + e(2)), np.log(5 * e(r)) - r]
    assert grace_loss_blockwise(z1, z2, tau=0.5).item() == pytest.approx(np.mean(rows), rel=1e-6)
    sample = grace_loss_blockwise(z1, z2, tau=0.5, anchors=torch.tensor([2, 0]), chunk=1)
    assert sample.item() == pytest.approx((rows[0] + rows[2]) / 2, rel=1e-6)


@pytest.mark.parametrize("chunk", [7, 64])
@pytest.mark.parametrize("sampled", [False, True])
@pytest.mark.parametrize("tau", [0.2, 0.5])
def test_blockwise_grace_equals_autograd_formula(chunk, sampled, tau):
    z1, z2 = _pair(41, 6, seed=chunk)
    anchors = torch.randperm(41, generator=torch.Generator().manual_seed(3))[:13] if sampled else None
    reference = grace_loss(z1, z2, tau=tau, chunk=chunk, anchors=anchors)
    fast = grace_loss_blockwise(z1, z2, tau=tau, chunk=chunk, anchors=anchors)
    torch.testing.assert_close(fast.double(), reference.double(), rtol=1e-6, atol=1e-7)
    for want, got in zip(
        torch.autograd.grad(2.5 * reference, (z1, z2)), torch.autograd.grad(2.5 * fast, (z1, z2)), strict=True
    ):
        torch.testing.assert_close(got.double(), want.double(), rtol=1e-5, atol=1e-7)


def test_blockwise_grace_gradient_flows_through_a_shared_input():
    z1, z2 = _pair(30, 5, seed=1)
    reference = torch.autograd.grad(grace_loss(z1, z1 + 0.5 * z2, chunk=8), (z1, z2))  # as MICRO's fused view
    fast = torch.autograd.grad(grace_loss_blockwise(z1, z1 + 0.5 * z2, chunk=8), (z1, z2))
    for want, got in zip(reference, fast, strict=True):
        torch.testing.assert_close(got.double(), want.double(), rtol=1e-5, atol=1e-7)


def test_blockwise_grace_without_gradients_keeps_the_value():
    z1, z2 = _pair(20, 4, seed=2)
    with torch.no_grad():
        value = grace_loss_blockwise(z1, z2, chunk=6)
    assert value.item() == pytest.approx(grace_loss(z1, z2).item(), rel=1e-6)
    assert not value.requires_grad


def test_micro_loss_and_gradients_equal_the_autograd_contrastive_loss(tmp_path, monkeypatch):
    import mmtrain.models.micro as micro

    root = random_dataset(tmp_path / "rand", n_users=40, n_items=30, features=True)
    gradients = []
    for loss in (grace_loss_blockwise, grace_loss):
        monkeypatch.setattr(micro, "grace_loss_blockwise", loss)
        model, data, _ = model_for(root, "micro", ("knn_k", 4), ("cl_chunk", 8), ("cl_weight", 1.0))
        torch.manual_seed(0)
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.1)
        model.train()
        batch = Batch(data.train.users[:16], data.train.items[:16], data.train.items[16:32])
        parts = model.loss(batch)
        parts["loss"].backward()
        gradients.append(
            (parts["cl"].item(), [p.grad.clone() for p in model.parameters() if p.grad is not None])
        )
    (fast_cl, fast), (ref_cl, ref) = gradients
    assert fast_cl == pytest.approx(ref_cl, rel=1e-5)
    assert len(fast) == len(ref)
    for got, want in zip(fast, ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
