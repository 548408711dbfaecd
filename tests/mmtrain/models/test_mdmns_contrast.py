"""MDMNS's contrastive terms after the issue-15 speed-up (gradients formed per chunk instead of recomputed
under checkpointing; the σ = 0 noise levels computed once) against the plain autograd computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmtrain.models.mdmns import full_set_contrast, multilevel_contrast, noise_levels


def plain_contrast(anchor, candidates, targets, tau):
    """The unchunked definition: mean cross-entropy of cos(a_i, b_j)/τ against b_{t_i}."""
    logits = F.normalize(anchor, dim=1) @ F.normalize(candidates, dim=1).T / tau
    return F.cross_entropy(logits, targets)


@pytest.mark.parametrize("detach_candidates", [False, True])
def test_full_set_contrast_value_and_gradients_equal_autograd(detach_candidates):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(50, 8, generator=gen, dtype=torch.float64).float().requires_grad_()
    b = torch.randn(37, 8, generator=gen).requires_grad_(not detach_candidates)
    targets = torch.randint(37, (50,), generator=gen)
    a2, b2 = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_(not detach_candidates)
    got = full_set_contrast(a, b, targets, 0.5, chunk=16)  # four chunks
    want = plain_contrast(a2, b2, targets, 0.5)
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-5)
    (3 * got).backward()
    (3 * want).backward()
    torch.testing.assert_close(a.grad, a2.grad, rtol=1e-4, atol=1e-6)
    if detach_candidates:
        assert b.grad is None
    else:
        torch.testing.assert_close(b.grad, b2.grad, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        assert float(full_set_contrast(a, b, targets, 0.5, chunk=16)) == pytest.approx(float(got.detach()))


def test_multilevel_contrast_equals_the_sum_over_levels_with_the_same_noise():
    levels = noise_levels(5)
    assert levels == [0, 0, 1, 2]  # the published steps = 5: two noise-free copies
    items = torch.randn(30, 6, generator=torch.Generator().manual_seed(1)).requires_grad_()
    twin = items.detach().clone().requires_grad_()
    got = multilevel_contrast(items, levels, 0.5, chunk=8, generator=torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    targets = torch.arange(30)
    want = 0
    for level in levels:
        with torch.no_grad():
            copy = twin + level * torch.randn(twin.shape, generator=gen)
        want = want + plain_contrast(twin, copy, targets, 0.5)
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-5)
    got.backward()
    want.backward()
    torch.testing.assert_close(items.grad, twin.grad, rtol=1e-4, atol=1e-6)
