"""MMSSL (Wei et al., WWW 2023): modality-aware user-item graphs, a WGAN-GP discriminator on user rows, and
cross-modal contrastive learning, on a two-layer bipartite GCN.

Equations (docs/models/mmssl.md; ``ui = D_u^-1/2 R`` (M x N), ``iu = D_i^-1/2 Rᵀ``, docs/graphs.md)::

    F_m      = dropout(Lin_m(X_m))                    X_m constant (not trained)
    U_m^f    = ui·F_m,  I_m^f = iu·U_m^f              feature side, one layer
    U_m^id   = G_m^ui·e_I,  I_m^id = G_m^iu·e_U       ID side over the modality graphs G_m (init: ui, iu)
    Z^U      = mean_m MHA({U_m^id})_m,  Z^I likewise   (head_num heads, see :func:`modality_attention`)
    u⁰ = e_U + id_cat_rate·normalize(Z^U),  i⁰ = e_I + id_cat_rate·normalize(Z^I)
    u^l = ui·i^{l-1},  i^l = iu·u^l  (l ≤ ui_layers)   softmax over the d dims on the last layer only
    z_u = mean_l u^l + model_cat_rate·Σ_m normalize(U_m^f),  z_i likewise

Per batch (``B_u`` = the distinct users of the batch, ``s_m(u) = normalize((U_m^f[u]·I_m^fᵀ)·(1 − R_u))``):

1. :meth:`MMSSL.auxiliary_step`, the discriminator ``D`` (own Adam, ``D_lr``, betas (0.5, 0.9)) on a no-grad
   forward: fake rows ``s_m(u)`` for every modality, real rows (:func:`real_rows`)
   ``normalize(softmax((R_u + log_log_scale·Gumbel)/real_data_tau) + ui_pre_scale·s_ui(u))`` with ``s_ui`` the
   same masked similarity of the final ``z``; ``L_D = −D(real) + D(fake) + gp_rate·GP`` with
   ``GP = gp_lambda·mean(‖∇D(α·real + (1−α)·fake)‖ − 1)²`` (:func:`gradient_penalty`).
2. :meth:`MMSSL.loss`, the recommender (trainer's AdamW): ``L = L_bpr + reg_weight·½Σ‖u,p,n‖²/B
   + feat_reg_decay·½Σ_m(‖U_m^f‖² + ‖I_m^f‖²)/N + cl_weight·Σ_m GRACE(U_m^id[B_u], z_u[B_u]; tau)
   + G_rate·(−D(fake))`` with D frozen for the last term (its parameters get no gradient).
3. Optionally the modality graphs ``G_m`` are regenerated from the feature-side similarities (``graph_regen``):
   ``none`` (default) keeps ``G_m = R``; ``epoch`` rebuilds them at every epoch start after the first from all
   users (top ``max(int(N·m_topk_rate), m_topk_min)`` items of ``s_m(u)``, binary, ``D^-1/2`` row-normalised,
   user blocks of ``2^24 / N`` rows); ``reference`` reproduces the original schedule (``T`` batches, no
   minimum k), which empties the graphs from the second batch on when N < 10 000. The graphs are buffers, so
   the best epoch's checkpoint carries the graph it was evaluated with.

The discriminator's rows are never formed as ``[B_u, N]`` matrices: fake and real rows are low rank plus sparse
on the training items (:mod:`mmtrain.models.mmssl_rows`), which gives the same losses and gradients at a
fraction of the cost; the real rows fall back to the dense computation when ``real_data_tau`` is too large for
their softmax to vanish off the training items in float32.

``attention: paper`` is real multi-head attention over the modalities; ``reference`` the original's linear map
(its K is built from Q). ``D_negative_slope`` 0.01 is the intended LeakyReLU (the original's is the identity,
1.0); ``D_max_hidden`` > 0 caps the discriminator's ``N/4``, ``N/8`` hidden widths. Why each deviation, the
memory and time cost and our measured numbers (including the regeneration and ``feat_reg_decay`` diagnosis):
docs/models/mmssl.md."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmtrain.data.interactions import Interactions
from mmtrain.data.loader import TrainData
from mmtrain.data.sampler import Batch
from mmtrain.graph.adjacency import SparseOperator, inv_power, sparse_matrix
from mmtrain.graph.propagate import spmm
from mmtrain.models.augment import feature_dropout
from mmtrain.models.base import id_embedding
from mmtrain.models.losses import bpr_of, grace_loss, l2_squared
from mmtrain.models.mmssl_rows import (
    FactoredRows,
    hidden_gradient_penalty,
    masked_factors,
    real_factors,
    sparse_softmax_exact,
)
from mmtrain.models.multimodal import MultimodalModel, feature_projections
from mmtrain.models.registry import register
from mmtrain.models.specs.mmssl import MMSSLSpec

REGEN_BLOCK = 2**24  # similarity entries per user block when regenerating the modality graphs


def mean_bipartite(rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int) -> SparseOperator:
    """``D_r^-1/2 B`` for the ``n_rows x n_cols`` matrix ``B`` of the pairs (duplicates summed): the reference
    ``csr_norm(mean_flag=True)``; empty rows stay 0."""
    ones = torch.ones(rows.numel(), dtype=torch.float32, device=rows.device)
    coo = sparse_matrix(rows, cols, ones, (n_rows, n_cols))
    idx, val = coo.indices(), coo.values()
    degree = torch.zeros(n_rows, dtype=val.dtype, device=val.device).index_add_(0, idx[0], val)
    return SparseOperator(
        sparse_matrix(idx[0], idx[1], inv_power(degree, 0.5)[idx[0]] * val, (n_rows, n_cols))
    )


def seen_rows(train: Interactions, users: torch.Tensor) -> torch.Tensor:
    """Dense binary ``R[users]`` (``[len(users), N]``)."""
    out = torch.zeros(len(users), train.n_items, device=users.device)
    rows, items = train.rows_of(users)
    out[rows, items] = 1.0
    return out


def masked_similarity(user_rows: torch.Tensor, items: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """``normalize((U[u]·Iᵀ)·(1 − R_u))`` row-wise: the reference ``u_sim_calculation`` (train items zeroed)."""
    return F.normalize((user_rows @ items.T) * (1 - seen), dim=1)


def real_rows(
    seen: torch.Tensor,
    ui_sim: torch.Tensor,
    uniform: torch.Tensor,
    log_log_scale: float,
    tau: float,
    scale: float,
) -> torch.Tensor:
    """The discriminator's "real" rows ``normalize(softmax((R_u + s·Gumbel)/τ) + scale·s_ui(u))``, with the
    Gumbel noise ``−log(−log(U + 1e-8) + 1e-8)`` from the uniform draws ``uniform`` (reference constants)."""
    logits = seen - log_log_scale * torch.log(-torch.log(uniform + 1e-8) + 1e-8)
    return F.normalize(torch.softmax(logits / tau, dim=1) + scale * ui_sim, dim=1)


def gradient_penalty(
    disc: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    alpha: torch.Tensor,
    lam: float,
) -> torch.Tensor:
    """WGAN-GP ``λ·mean_rows(‖∇_x D(x)‖₂ − 1)²`` at ``x = α·real + (1 − α)·fake`` (``alpha``: ``[rows, 1]``);
    differentiable with respect to D's parameters."""
    x = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = disc(x)
    (grad,) = torch.autograd.grad(out, x, grad_outputs=torch.ones_like(out), create_graph=True)
    return lam * ((grad.norm(2, dim=1) - 1) ** 2).mean()


def modality_attention(
    views: list[torch.Tensor],
    w_q: torch.Tensor,
    w_k: torch.Tensor,
    w_cat: torch.Tensor,
    heads: int,
    mode: str = "paper",
) -> torch.Tensor:
    """Mean over modalities of multi-head self-attention across the modality views ``[n, d]`` of each node.

    ``paper``: ``Z_m = concat_h(Σ_m' softmax_m'(Q_m^h·K_m'^h/√d_h)·V_m')·W_cat`` with ``Q = U·W_q``,
    ``K = U·W_k``, ``V = U`` (full ``d``, as the reference). ``reference``: the reference code's result, which
    builds K from Q and pairs the weights with the query's own V, so they sum to 1:
    ``Z_m = U_m·Σ_h W_cat[h·d:(h+1)·d]``.
    """
    stacked = torch.stack(views)
    n_mods, n, dim = stacked.shape
    if mode == "reference":
        return stacked.mean(0) @ w_cat.view(heads, dim, dim).sum(0)
    d_head = dim // heads
    q = (stacked @ w_q).view(n_mods, n, heads, d_head)
    k = (stacked @ w_k).view(n_mods, n, heads, d_head)
    weights = torch.softmax(torch.einsum("mnhc,knhc->hmkn", q, k) / math.sqrt(d_head), dim=2)
    mixed = torch.einsum("hmkn,knd->mnhd", weights, stacked).reshape(n_mods, n, heads * dim)
    return (mixed @ w_cat).mean(0)


class Discriminator(nn.Module):
    """``100·σ(MLP(x))``, MLP ``N → h1 → h2 → 1`` with LeakyReLU, BatchNorm and dropout after each hidden layer.

    ``h1 = N/4``, ``h2 = N/8`` (reference); ``max_hidden`` > 0 caps ``h1`` at it and ``h2`` at half of it.
    """

    def __init__(
        self, n_items: int, drop1: float, drop2: float, max_hidden: int = 0, negative_slope: float = 0.01
    ):
        super().__init__()
        h1, h2 = max(n_items // 4, 1), max(n_items // 8, 1)
        if max_hidden > 0:
            h1, h2 = min(h1, max_hidden), min(h2, max(max_hidden // 2, 1))
        self.net = nn.Sequential(
            nn.Linear(n_items, h1),
            nn.LeakyReLU(negative_slope),
            nn.BatchNorm1d(h1),
            nn.Dropout(drop1),
            nn.Linear(h1, h2),
            nn.LeakyReLU(negative_slope),
            nn.BatchNorm1d(h2),
            nn.Dropout(drop2),
            nn.Linear(h2, 1),
            nn.Sigmoid(),
        )
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_normal_(layer.weight)
                nn.init.zeros_(layer.bias)

    @property
    def first(self) -> nn.Linear:
        """The ``N → h1`` layer (its product with factored rows is taken outside, :mod:`mmssl_rows`)."""
        return self.net[0]

    def forward(self, x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        """``100·σ(MLP(x))``; the dropout layers draw their masks from ``rng`` (training mode only)."""
        return self.from_hidden(self.first(x.float()), rng)

    def from_hidden(self, x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        """The layers after the first, on its output ``x·W₁ᵀ + b₁``."""
        for layer in self.net[1:]:
            if isinstance(layer, nn.Dropout):
                x = feature_dropout(x, layer.p if self.training else 0.0, rng)
            else:
                x = layer(x)
        return 100 * x.view(-1)


Rows = FactoredRows | torch.Tensor


def first_layer(disc: Discriminator, rows: Rows) -> torch.Tensor:
    """The discriminator's first layer ``x·W₁ᵀ + b₁`` on dense or factored rows."""
    if isinstance(rows, FactoredRows):
        return rows.project(disc.first.weight) + disc.first.bias
    return disc.first(rows.float())


def discriminator_loss(
    disc: Discriminator,
    fake: list[Rows],
    real: Rows,
    alpha: torch.Tensor,
    gp_rate: float,
    gp_lambda: float,
    rng: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_D, GP)``: ``L_D = −D(real) + D(fake) + gp_rate·GP`` with the real rows repeated once per modality and
    ``GP`` at ``α·real + (1 − α)·fake`` (:func:`hidden_gradient_penalty`: the same value and gradients as
    :func:`gradient_penalty` on the dense rows, without forming them)."""
    h_fake = torch.cat([first_layer(disc, f) for f in fake])
    h_real = first_layer(disc, real).repeat(len(fake), 1)

    def rest(h: torch.Tensor) -> torch.Tensor:
        return disc.from_hidden(h, rng)

    mixed = alpha * h_real + (1 - alpha) * h_fake
    penalty = hidden_gradient_penalty(rest, mixed, disc.first.weight, gp_lambda)
    loss = -rest(h_real).mean() + rest(h_fake).mean() + gp_rate * penalty
    return loss, penalty


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Parameters of ``module`` do not require grad inside the block (gradients still reach its inputs)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@register
class MMSSL(MMSSLSpec, MultimodalModel):
    """Modality graphs + WGAN-GP discriminator + cross-modal GRACE on a bipartite GCN (see module docstring)."""

    def __init__(self, data: TrainData, config: dict[str, Any]):
        super().__init__(data, config)
        dim, heads = config["embedding_size"], config["head_num"]
        self.user_embedding = id_embedding(self.n_users, dim)
        self.item_embedding = id_embedding(self.n_items, dim)
        self.features = [data.feature(m) for m in self.modalities]
        self.projections = feature_projections(data, self.modalities, dim)
        for layer in self.projections:
            nn.init.xavier_uniform_(layer.weight)
        self.w_q = nn.Parameter(nn.init.xavier_uniform_(torch.empty(dim, dim)))
        self.w_k = nn.Parameter(nn.init.xavier_uniform_(torch.empty(dim, dim)))
        self.w_cat = nn.Parameter(nn.init.xavier_uniform_(torch.empty(heads * dim, dim)))
        self.train_pairs = data.train
        users, items = data.train.users, data.train.items
        self.ui = mean_bipartite(users, items, self.n_users, self.n_items)
        self.iu = mean_bipartite(items, users, self.n_items, self.n_users)
        for j in range(len(self.modalities)):
            self.register_buffer(f"modal_graph_{j}", torch.stack([users, items]))
        self._modal_ops: list[tuple[SparseOperator, SparseOperator]] | None = None
        self.discriminator = Discriminator(
            self.n_items,
            config["G_drop1"],
            config["G_drop2"],
            config["D_max_hidden"],
            config["D_negative_slope"],
        )
        self.d_optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=config["D_lr"], betas=(0.5, 0.9)
        )
        self._batch_index = 0
        self._pending: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in self.modalities]

    def main_parameters(self) -> Iterator[nn.Parameter]:
        """Everything but the discriminator (trained by :meth:`auxiliary_step`)."""
        own = {id(p) for p in self.discriminator.parameters()}
        return (p for p in self.parameters() if id(p) not in own)

    def modal_graph(self, j: int) -> torch.Tensor:
        """The ``[2, E]`` (user, item) pairs of modality ``j``'s generated graph."""
        return getattr(self, f"modal_graph_{j}")

    def set_modal_graph(self, j: int, users: torch.Tensor, items: torch.Tensor) -> None:
        setattr(self, f"modal_graph_{j}", torch.stack([users.long(), items.long()]))
        self._modal_ops = None

    def modal_operators(self) -> list[tuple[SparseOperator, SparseOperator]]:
        """``(G_m^ui, G_m^iu) = (D_u^-1/2 G_m, D_i^-1/2 G_mᵀ)`` per modality (cached until the graph changes)."""
        if self._modal_ops is None:
            self._modal_ops = []
            for j in range(len(self.modalities)):
                users, items = self.modal_graph(j)
                self._modal_ops.append(
                    (
                        mean_bipartite(users, items, self.n_users, self.n_items),
                        mean_bipartite(items, users, self.n_items, self.n_users),
                    )
                )
        return self._modal_ops

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        """The generated graphs vary in size: take the stored shapes before loading."""
        for j in range(len(self.modalities)):
            key = f"{prefix}modal_graph_{j}"
            if key in state_dict:
                setattr(
                    self,
                    f"modal_graph_{j}",
                    torch.empty_like(state_dict[key], device=self.modal_graph(j).device),
                )
        self._modal_ops = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def feature_side(
        self, rng: torch.Generator | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(U_m^f, I_m^f)`` per modality (projections dropped out in training mode, masks drawn from ``rng``)."""
        users, items = [], []
        p = self.config["dropout"] if self.training else 0.0
        for x, projection in zip(self.features, self.projections, strict=True):
            u = spmm(self.ui, feature_dropout(projection(x), p, rng))
            users.append(u)
            items.append(spmm(self.iu, u))
        return users, items

    def _outputs(self, rng: torch.Generator | None = None) -> dict[str, Any]:
        feat_u, feat_i = self.feature_side(rng)
        ops = self.modal_operators()
        id_u = [spmm(g_ui, self.item_embedding) for g_ui, _ in ops]
        id_i = [spmm(g_iu, self.user_embedding) for _, g_iu in ops]
        heads, mode, rate = self.config["head_num"], self.config["attention"], self.config["id_cat_rate"]
        z_u = modality_attention(id_u, self.w_q, self.w_k, self.w_cat, heads, mode)
        z_i = modality_attention(id_i, self.w_q, self.w_k, self.w_cat, heads, mode)
        u = self.user_embedding + rate * F.normalize(z_u, dim=1)
        i = self.item_embedding + rate * F.normalize(z_i, dim=1)
        user_layers, item_layers = [u], [i]
        n_layers = self.config["ui_layers"]
        for layer in range(n_layers):
            u = spmm(self.ui, i)
            if layer == n_layers - 1:
                u = torch.softmax(u, dim=-1)
            i = spmm(self.iu, u)
            if layer == n_layers - 1:
                i = torch.softmax(i, dim=-1)
            user_layers.append(u)
            item_layers.append(i)
        cat = self.config["model_cat_rate"]
        user_z = torch.stack(user_layers).mean(0) + cat * sum(F.normalize(x, dim=1) for x in feat_u)
        item_z = torch.stack(item_layers).mean(0) + cat * sum(F.normalize(x, dim=1) for x in feat_i)
        return {"user": user_z, "item": item_z, "feat_u": feat_u, "feat_i": feat_i, "id_u": id_u}

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._outputs()
        return out["user"], out["item"]

    def fake_factors(self, out: dict[str, Any], users: torch.Tensor) -> list[FactoredRows]:
        """The generator's rows ``s_m(u)`` per modality, as low-rank-plus-sparse factors."""
        rows, cols = self.train_pairs.rows_of(users)
        return [
            masked_factors(u[users], i, rows, cols) for u, i in zip(out["feat_u"], out["feat_i"], strict=True)
        ]

    def real_rows_of(self, out: dict[str, Any], users: torch.Tensor, rng: torch.Generator | None) -> Rows:
        """The discriminator's real rows: factored when the softmax is exactly sparse (the published
        ``real_data_tau``, :func:`sparse_softmax_exact`), else dense as :func:`real_rows`."""
        cfg = self.config
        rows, cols = self.train_pairs.rows_of(users)
        ui = masked_factors(out["user"][users], out["item"], rows, cols)
        every_row = bool((torch.bincount(rows, minlength=len(users)) > 0).all())
        if every_row and sparse_softmax_exact(cfg["log_log_scale"], cfg["real_data_tau"]):
            uniform = torch.rand(len(rows), generator=rng, device=rows.device)
            return real_factors(ui, uniform, cfg["log_log_scale"], cfg["real_data_tau"], cfg["ui_pre_scale"])
        seen = seen_rows(self.train_pairs, users)
        uniform = torch.rand(seen.shape, generator=rng, device=seen.device)
        return real_rows(
            seen, ui.dense(), uniform, cfg["log_log_scale"], cfg["real_data_tau"], cfg["ui_pre_scale"]
        )

    def auxiliary_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One WGAN-GP update of the discriminator on the batch's distinct users."""
        users = torch.unique(batch.users)
        n_mods = len(self.modalities)
        if len(users) * n_mods < 2:  # BatchNorm needs two rows
            return {}
        cfg = self.config
        with torch.no_grad():
            out = self._outputs(batch.rng)
            fake = self.fake_factors(out, users)
            real = self.real_rows_of(out, users, batch.rng)
        alpha = torch.rand(len(users) * n_mods, 1, generator=batch.rng, device=users.device)
        loss, penalty = discriminator_loss(
            self.discriminator, fake, real, alpha, cfg["gp_rate"], cfg["gp_lambda"], batch.rng
        )
        self.d_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.d_optimizer.step()
        return {"d_loss": loss.detach(), "d_gp": penalty.detach()}

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        out = self._outputs(batch.rng)
        user_z, item_z = out["user"], out["item"]
        u, p, n = user_z[batch.users], item_z[batch.pos_items], item_z[batch.neg_items]
        rank = bpr_of(u, p, n)
        reg = cfg["reg_weight"] * l2_squared(u, p, n)
        feat_sq = sum(x.pow(2).sum() for x in (*out["feat_u"], *out["feat_i"]))
        feat_reg = cfg["feat_reg_decay"] * 0.5 * feat_sq / self.n_items
        users = torch.unique(batch.users)
        anchor = user_z[users]
        cl = cfg["cl_weight"] * sum(grace_loss(view[users], anchor, cfg["tau"]) for view in out["id_u"])
        fake = self.fake_factors(out, users)
        adversarial = torch.zeros((), device=u.device)
        if len(users) * len(fake) >= 2:
            with frozen(self.discriminator):
                hidden = torch.cat([first_layer(self.discriminator, f) for f in fake])
                adversarial = -self.discriminator.from_hidden(hidden, batch.rng).mean()
        if cfg["graph_regen"] == "reference":
            self._reference_regeneration(users, fake)
        loss = rank + reg + feat_reg + cl + cfg["G_rate"] * adversarial
        return {"loss": loss, "bpr": rank, "reg": reg, "feat_reg": feat_reg, "cl": cl, "g_adv": adversarial}

    def on_epoch_start(self, epoch: int, rng: torch.Generator) -> None:
        """``epoch`` mode: regenerate the modality graphs (from epoch 2); ``reference`` mode: batch count 0."""
        self._batch_index = 0
        if self.config["graph_regen"] == "epoch" and epoch > 1:
            self.regenerate()

    def topk(self) -> int:
        """Items per user in a generated graph (``epoch`` mode)."""
        k = max(int(self.n_items * self.config["m_topk_rate"]), self.config["m_topk_min"])
        return min(k, self.n_items)

    @torch.no_grad()
    def regenerate(self) -> None:
        """``G_m`` = the top-k items of ``s_m(u)`` for every user (eval mode, user blocks of 2^24/N rows)."""
        was_training = self.training
        self.eval()
        try:
            feat_u, feat_i = self.feature_side()
        finally:
            self.train(was_training)
        k, rows = self.topk(), max(1, REGEN_BLOCK // self.n_items)
        all_users = torch.arange(self.n_users, device=feat_u[0].device)
        for j, (u_f, i_f) in enumerate(zip(feat_u, feat_i, strict=True)):
            blocks = []
            for start in range(0, self.n_users, rows):
                block = all_users[start : start + rows]
                sim = (u_f[block] @ i_f.T) * (1 - seen_rows(self.train_pairs, block))
                blocks.append(sim.topk(k, dim=1).indices)
            self.set_modal_graph(j, all_users.repeat_interleave(k), torch.cat(blocks).reshape(-1))

    def _reference_regeneration(self, users: torch.Tensor, fake: list[FactoredRows]) -> None:
        """The reference schedule: batches with ``idx % T == 0 and idx != 0`` rebuild ``G_m`` from the pending
        top ``int(N·m_topk_rate)`` lists (then emptied); the others append their users' top items of ``s_m``."""
        idx = self._batch_index
        self._batch_index += 1
        k = int(self.n_items * self.config["m_topk_rate"])
        for j, rows in enumerate(fake):
            if idx % self.config["T"] == 0 and idx != 0:
                pending = self._pending[j]
                empty = torch.empty(0, dtype=torch.long, device=users.device)
                pairs_u = torch.cat([pu for pu, _ in pending]) if pending else empty
                pairs_i = torch.cat([pi for _, pi in pending]) if pending else empty
                self.set_modal_graph(j, pairs_u, pairs_i)
                self._pending[j] = []
            elif k > 0:
                top = rows.dense().detach().topk(k, dim=1).indices
                self._pending[j].append((users.repeat_interleave(k), top.reshape(-1)))
