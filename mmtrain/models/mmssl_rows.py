"""MMSSL's discriminator rows without the dense ``[B, N]`` matrices: low rank plus sparse.

The discriminator sees one row of ``N`` item scores per batch user. Its "fake" rows
``normalize((U[u]·Iᵀ)·(1 − R_u))`` are a rank-``d`` product with the user's training items zeroed, and its "real"
rows ``normalize(softmax((R_u + s·Gumbel)/τ) + k·s_ui(u))`` are such a row plus a softmax that is non-zero only
on the training items (the others' weights ``e^{(noise − 1)/τ}`` underflow to exactly 0 in float32 for the
published ``τ = 0.005``). Both are ``diag(scale)·L·Rᵀ + S`` with ``S`` sparse on the training items
(:class:`FactoredRows`), so the discriminator's first layer ``X·Wᵀ`` costs ``B·d·h + d·N·h + nnz·h`` instead of
``B·N·h``, and the gradient penalty's ``‖∇_x D‖ = ‖(∂D/∂h)·W‖`` goes through the ``h x h`` Gram matrix ``W·Wᵀ``.
The mathematics are those of the dense functions in :mod:`mmtrain.models.mmssl` (tests compare them); only the
order of the floating-point sums differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

EPS = 1e-12  # F.normalize's floor on the norm
GUMBEL_MAX = 16.3  # |−log(−log(U + 1e-8) + 1e-8)| for U in [0, 1) (float32) stays below this
UNDERFLOW_GAP = 110.0  # e^{-110} is below float32's smallest subnormal (1.4e-45)


class FactoredRows(NamedTuple):
    """Rows ``X = diag(scale)·left·rightᵀ + S`` (``[B, N]``), ``S[rows, cols] = vals`` (positions distinct)."""

    scale: torch.Tensor  # [B]
    left: torch.Tensor  # [B, d]
    right: torch.Tensor  # [N, d]
    rows: torch.Tensor  # [nnz]
    cols: torch.Tensor  # [nnz]
    vals: torch.Tensor  # [nnz]

    def dense(self) -> torch.Tensor:
        """The ``[B, N]`` matrix (tests, small cases)."""
        out = self.scale[:, None] * (self.left @ self.right.T)
        return out.index_put((self.rows, self.cols), self.vals, accumulate=True)

    def sq_norm(self) -> torch.Tensor:
        """Row-wise ``‖X_b‖²`` from the ``d x d`` Gram ``rightᵀ·right`` and the sparse entries."""
        low = ((self.left @ (self.right.T @ self.right)) * self.left).sum(1)
        at = (self.left[self.rows] * self.right[self.cols]).sum(1)
        n = len(self.scale)
        cross = torch.zeros(n, dtype=at.dtype, device=at.device).index_add(0, self.rows, self.vals * at)
        sparse = torch.zeros(n, dtype=at.dtype, device=at.device).index_add(0, self.rows, self.vals**2)
        return self.scale**2 * low + 2 * self.scale * cross + sparse

    def normalized(self) -> FactoredRows:
        """``F.normalize(X, dim=1)``: each row divided by ``max(‖X_b‖, 1e-12)``."""
        inv = 1.0 / self.sq_norm().clamp_min(EPS**2).sqrt()
        return self._replace(scale=self.scale * inv, vals=self.vals * inv[self.rows])

    def project(self, weight: torch.Tensor) -> torch.Tensor:
        """``X·weightᵀ`` (``weight``: ``[h, N]``, a linear layer's) as ``[B, h]``."""
        low = self.scale[:, None] * (self.left @ (weight @ self.right).T)
        src = self.vals[:, None] * weight[:, self.cols].T
        return low.index_add(0, self.rows, src)


def masked_factors(
    user_rows: torch.Tensor, items: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
) -> FactoredRows:
    """``normalize((U[u]·Iᵀ)·(1 − R_u))`` (``masked_similarity``) as factors; ``(rows, cols)``: the batch
    row and item of every training pair of the batch users."""
    raw = (user_rows[rows] * items[cols]).sum(1)
    ones = torch.ones(len(user_rows), dtype=user_rows.dtype, device=user_rows.device)
    return FactoredRows(ones, user_rows, items, rows, cols, -raw).normalized()


def sparse_softmax_exact(log_log_scale: float, tau: float) -> bool:
    """Whether ``softmax((R_u + s·Gumbel)/τ)`` is exactly 0 in float32 off the training items, so the real
    rows' softmax can be taken over those items alone (the gap between a training item's logit and any other
    is at least ``(1 − 2·s·GUMBEL_MAX)/τ``)."""
    return (1.0 - 2.0 * log_log_scale * GUMBEL_MAX) / tau >= UNDERFLOW_GAP


def real_factors(
    ui: FactoredRows, uniform: torch.Tensor, log_log_scale: float, tau: float, scale: float
) -> FactoredRows:
    """``real_rows``: ``normalize(softmax((R_u + s·Gumbel)/τ) + scale·s_ui(u))`` with ``s_ui = ui`` (masked
    factors of the final embeddings, so its sparse part sits on the training items) and ``uniform`` the draws
    at those items; valid when :func:`sparse_softmax_exact` holds and every row has a training item."""
    gumbel = -torch.log(-torch.log(uniform + 1e-8) + 1e-8)
    logits = (1.0 + log_log_scale * gumbel) / tau
    n = len(ui.scale)
    row_max = torch.full((n,), -torch.inf, dtype=logits.dtype, device=logits.device)
    row_max = row_max.scatter_reduce(0, ui.rows, logits, "amax")
    e = torch.exp(logits - row_max[ui.rows])
    total = torch.zeros(n, dtype=e.dtype, device=e.device).index_add(0, ui.rows, e)
    soft = e / total[ui.rows]
    return ui._replace(scale=scale * ui.scale, vals=scale * ui.vals + soft).normalized()


def hidden_gradient_penalty(
    rest: Callable[[torch.Tensor], torch.Tensor], hidden: torch.Tensor, weight: torch.Tensor, lam: float
) -> torch.Tensor:
    """``gradient_penalty`` for ``D(x) = rest(x·Wᵀ + b)`` given ``hidden = x·Wᵀ + b`` at the interpolates:
    ``∇_x D = (∂rest/∂hidden)·W``, its row norms through ``W·Wᵀ`` when ``h`` is below the row count."""
    out = rest(hidden)
    (grad,) = torch.autograd.grad(out, hidden, grad_outputs=torch.ones_like(out), create_graph=True)
    if weight.shape[0] < grad.shape[0]:
        norm = ((grad @ (weight @ weight.T)) * grad).sum(1).clamp_min(EPS**2).sqrt()
    else:
        norm = (grad @ weight).norm(2, dim=1)
    return lam * ((norm - 1) ** 2).mean()
