"""mmtrain loss blocks against hand-computed values (docs/models/README.md, "Shared building blocks")."""

from __future__ import annotations

import math

import pytest
import torch

from mmtrain.models.losses import bpr_loss, emb_loss, info_nce, l2_squared


def test_bpr_loss():
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0])
    expected = -(math.log(1 / (1 + math.exp(-1.0))) + math.log(0.5)) / 2
    assert bpr_loss(pos, neg).item() == pytest.approx(expected, abs=1e-7)
    assert bpr_loss(torch.tensor([1000.0]), torch.tensor([-1000.0])).item() == 0.0  # stable, no overflow


def test_regularisers():
    u = torch.tensor([[3.0, 4.0], [0.0, 0.0]])  # Frobenius norm 5
    p = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # 1
    # MMRec EmbLoss: non-squared Frobenius norms / B (B = 2 rows)
    assert emb_loss(u, p).item() == pytest.approx((5 + 1) / 2)
    # LATTICE style: sum of 1/2 squared norms / B
    assert l2_squared(u, p).item() == pytest.approx((0.5 * 25 + 0.5 * 1) / 2)


def test_info_nce():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    c = 1 / math.sqrt(2)  # cos(a_1, b_2) = 0, cos(a_2, b_2) = c, cos(a_1, b_1) = 1, cos(a_2, b_1) = 0
    t = 0.5
    row1 = -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(c / t)))
    row2 = -math.log(math.exp(c / t) / (math.exp(0.0) + math.exp(c / t)))
    assert info_nce(a, b, temperature=t).item() == pytest.approx((row1 + row2) / 2, abs=1e-6)
