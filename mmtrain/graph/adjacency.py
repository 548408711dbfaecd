"""The normalised user-item adjacency ``A = [[0, R], [Rᵀ, 0]]`` ((M+N) x (M+N), R from train) and the sparse
operator every graph model propagates with.

Normalisations (docs/graphs.md "User-item adjacency"):

- ``sym``: ``D^-1/2 A D^-1/2`` (MMRec LightGCN, FREEDOM, BM3, MGCN, SOIL, SLMRec); zero degrees give 0.
- ``sym_self``: ``D^-1/2 (A + I) D^-1/2`` with D the degree of ``A + I`` (DiffMM, MDMNS).
- ``rw_self``: ``D^-1 (A + I)``, row-normalised with self loops (NGCF ``norm_adj``: LATTICE, MICRO).
- ``mean``: ``D^-1 A``, row-normalised without self loops: each node the mean of its neighbours (PyG
  ``aggr='mean'`` over both edge directions, no degree weights: MMGCN); isolated nodes give 0.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import torch

NORMS = ("sym", "sym_self", "rw_self", "mean")


class _SpMM(torch.autograd.Function):
    """``A @ X`` with a fixed sparse ``A``; the backward is ``Aᵀ @ grad`` with a precomputed transpose (torch's
    own sparse backward re-transposes and coalesces on every call, which dominates a CPU training step)."""

    @staticmethod
    def forward(ctx, dense: torch.Tensor, op: SparseOperator) -> torch.Tensor:  # type: ignore[override]
        ctx.op = op
        return op.product(dense, transpose=False)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return ctx.op.product(grad, transpose=True), None


class SparseOperator:
    """A fixed (not learned) sparse matrix: COO for inspection, CSR (and its transpose) for products.

    ``op @ dense`` is differentiable with respect to ``dense``; ``symmetric`` skips storing the transpose.
    On CPU the products use SciPy's CSR kernel (several times faster than torch's CPU sparse kernels on
    one thread, and deterministic); on CUDA, torch's CSR (cuSPARSE).
    """

    def __init__(self, coo: torch.Tensor, symmetric: bool = False):
        self.coo = coo.coalesce()
        self.symmetric = symmetric
        if self.coo.device.type == "cpu":
            idx = self.coo.indices().numpy()
            values = self.coo.values().numpy()
            self.csr = scipy.sparse.csr_matrix((values, (idx[0], idx[1])), shape=tuple(self.coo.shape))
            self.csr_t = self.csr if symmetric else self.csr.T.tocsr()
        else:
            self.csr = self.coo.to_sparse_csr()
            self.csr_t = self.csr if symmetric else self.coo.t().coalesce().to_sparse_csr()

    @property
    def shape(self) -> torch.Size:
        return self.coo.shape

    @property
    def device(self) -> torch.device:
        return self.coo.device

    def indices(self) -> torch.Tensor:
        return self.coo.indices()

    def values(self) -> torch.Tensor:
        return self.coo.values()

    def to(self, device: torch.device | str) -> SparseOperator:
        return SparseOperator(self.coo.to(device), self.symmetric)

    def to_dense(self) -> torch.Tensor:
        return self.coo.to_dense()

    @torch.compiler.disable
    def product(self, dense: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """``A @ dense`` (or ``Aᵀ @ dense``) without autograd; ``dense`` must be on this operator's device.
        Opaque to ``torch.compile`` (SciPy code is not traceable)."""
        matrix = self.csr_t if transpose else self.csr
        if self.coo.device.type == "cpu":
            out = matrix @ dense.detach().to(self.coo.dtype).contiguous().numpy()
            return torch.from_numpy(np.ascontiguousarray(out))
        return matrix @ dense.to(self.coo.dtype).contiguous()

    def __matmul__(self, dense: torch.Tensor) -> torch.Tensor:
        return _SpMM.apply(dense, self)


def sparse_matrix(
    rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    """A coalesced ``torch.sparse_coo_tensor`` (duplicates summed)."""
    return torch.sparse_coo_tensor(
        torch.stack([rows.long(), cols.long()]), values, shape, check_invariants=False
    ).coalesce()


def inv_power(degree: torch.Tensor, power: float) -> torch.Tensor:
    """``degree ** -power`` with 0 where the degree is 0 (isolated nodes stay 0, not inf)."""
    out = torch.zeros_like(degree)
    nz = degree > 0
    out[nz] = degree[nz].pow(-power)
    return out


def normalize(
    rows: torch.Tensor,
    cols: torch.Tensor,
    values: torch.Tensor,
    n: int,
    norm: str,
    symmetric: bool = False,
    floor: float | None = None,
) -> SparseOperator:
    """Normalise a square sparse matrix given as COO triples: ``sym``/``rw`` on row degrees (sum of values).

    ``symmetric`` declares that the triples describe a symmetric matrix (then ``sym`` keeps it symmetric).
    ``floor`` clamps every normalised entry from below, duplicates summed first (SOIL's graphs of signed
    similarity weights, floored at 1e-7 as its reference's sparse Laplacian).
    """
    if floor is not None:
        coo = sparse_matrix(rows, cols, values, (n, n))
        (rows, cols), values = coo.indices(), coo.values()
    degree = torch.zeros(n, dtype=values.dtype, device=values.device).index_add_(0, rows, values)
    if norm == "sym":
        d = inv_power(degree, 0.5)
        values = d[rows] * values * d[cols]
    elif norm == "rw":
        values = inv_power(degree, 1.0)[rows] * values
        symmetric = False
    else:
        raise ValueError(f"unknown normalisation {norm!r}")
    if floor is not None:
        values = values.clamp(min=floor)
    return SparseOperator(sparse_matrix(rows, cols, values, (n, n)), symmetric=symmetric)


def ui_adjacency(
    users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int, norm: str = "sym"
) -> SparseOperator:
    """Normalised bipartite adjacency over nodes ``[users; items]`` from training pairs (binary R)."""
    if norm not in NORMS:
        raise ValueError(f"unknown user-item normalisation {norm!r} (choose from {', '.join(NORMS)})")
    n = n_users + n_items
    u, i = users.long(), items.long() + n_users
    rows, cols = torch.cat([u, i]), torch.cat([i, u])
    if norm in ("sym_self", "rw_self"):
        diag = torch.arange(n, device=users.device)
        rows, cols = torch.cat([rows, diag]), torch.cat([cols, diag])
    values = torch.ones(rows.numel(), dtype=torch.float32, device=users.device)
    return normalize(rows, cols, values, n, "rw" if norm in ("rw_self", "mean") else "sym", symmetric=True)


def bipartite_block(adjacency: SparseOperator, n_users: int) -> SparseOperator:
    """The user x item block of a normalised ``[users; items]`` adjacency (e.g. ``D_u^-1/2 R D_i^-1/2``)."""
    idx, val = adjacency.indices(), adjacency.values()
    keep = (idx[0] < n_users) & (idx[1] >= n_users)
    n_items = adjacency.shape[0] - n_users
    return SparseOperator(sparse_matrix(idx[0, keep], idx[1, keep] - n_users, val[keep], (n_users, n_items)))
