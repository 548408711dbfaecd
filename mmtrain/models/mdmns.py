"""MDMNS (modality-aware diffusion with multi-level negative sampling; ``HuXianshengNXU/MDMNS-main``), built on
DiffMM: per-modality diffusion models generate modality-specific U-I graphs, per-modality and fused GCN views
are trained with BPR per modality view and a contrastive loss.

Equations (docs/models/mdmns.md; Â = D^-1/2 (A + I) D^-1/2 of the training graph, docs/graphs.md)::

    diffusion (per modality m, on a user's train row x₀ ∈ {0,1}^N; mmtrain.models.diffusion):
      L_m  = mean_u w_t·mean((x₀ − x̂₀)²) + e_loss·mean_u mean((x̂₀ f_m − x₀ e_I)²)       (f_m, e_I detached)
      G_m  = D^-1/2 (B_m + I) D^-1/2,  B_m = bipartite(top-rebuild_k of p_sample(x₀) per user),
             then edge dropout: every stored entry kept with probability keepRate and divided by keepRate
    f_m    = leaky_relu(X_m W_m) (trans 0) or Lin_m(X_m) (trans 1)
    E_m    = Â[e_U; n(f_m)] + Â[(Â[e_U; n(f_m)])_U; e_I] + ris_adj_lambda·G_m[e_U; e_I]        (n = row L2 norm)
    E_f    = Â[e_U; n(Σ_m w_m E_m,I)] + Â[(that)_U; e_I] + ris_adj_lambda·Â[e_U; e_I],  w = softmax(modal_weight)
    z(V)   = Σ_{l=0..L} Â^l V (L = ui_layers) + ris_lambda·n(V)                for V ∈ {E_f, E_m}
    L      = Σ_m L_bpr(z(E_m)) + reg_weight·(‖e_U‖² + ‖e_I‖²) + cl_weight·L_cl
    cl_method 0 (DiffMM):  C_m = Σ_l Â^l G_m[e_U; n(f_m)];  L_cl = Σ_{m<m'} c(C_m,U, C_m',U; batch users)
                                                                  + c(C_m,I, C_m',I; batch positives)
        c(a, b; S) = mean_{s∈S} −log e^{cos(a_s,b_s)/τ} / Σ_j e^{cos(a_s,b_j)/τ}   (full-set denominator, τ = tau)
    cl_method 1 (multi-level negatives): L_cl = Σ_m [c(z_f,U, z_m,U; all) + c(z_f,I, z_m,I; all)]
                                              + Σ_m Σ_{σ∈levels} c(z_m,I, sg(z_m,I + σ·ε); all)
        levels = [⌊T/10⌋, ⌊T/8⌋, ⌊T/4⌋, ⌊T/2⌋] (T = steps): the noisy copy of item i is its positive and the
        noisy copies of the other items its negatives; the copies are drawn without gradient, as published.
    score  = Σ_{V ∈ {E_f, E_m}} z_u(V) · z_i(V)    (``forward`` concatenates the views)

Training schedule. ``on_epoch_start`` regenerates every G_m from the current denoisers (all users, in blocks of
``gen_block`` rows) and draws a new edge-dropout mask (seeded by the run seed and the epoch); evaluation uses
the graphs of the last epoch, as the original does. The denoisers are trained by the model's own Adam
(same lr, no weight decay) in ``auxiliary_step`` on the rows of the batch's distinct users, on every
``diff_every``-th batch: the original trains them for one pass over all users per epoch (batches of
``batch`` users), so ``diff_every = 0`` means ``round(|train| / M)`` (6 on TikTok, Baby and Sports), which
gives about the same number of denoiser updates and rows per epoch. The logged ``diff``/``gc`` are the latest
values. Here the graphs of epoch e come from denoisers trained up to epoch e − 1 (the original first trains the
denoisers for the epoch, then regenerates); epoch 1 uses untrained denoisers.

The omitted MDMNS "guide" (untrained and constant in the published code, which raises as written), the other
deviations from the published code, the memory cost and our measured numbers: docs/models/mdmns.md."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmtrain.data.loader import TrainData
from mmtrain.data.sampler import Batch
from mmtrain.errors import TrainError
from mmtrain.graph.adjacency import SparseOperator, sparse_matrix, ui_adjacency
from mmtrain.graph.propagate import spmm
from mmtrain.models.base import id_embedding
from mmtrain.models.diffusion import Denoiser, GaussianDiffusion
from mmtrain.models.losses import bpr_of
from mmtrain.models.multimodal import MultimodalModel, feature_projections
from mmtrain.models.registry import register
from mmtrain.models.specs.mdmns import MDMNSSpec


def noise_levels(steps: int) -> list[int]:
    """The multi-level noise scales ``[⌊T/10⌋, ⌊T/8⌋, ⌊T/4⌋, ⌊T/2⌋]`` (``int(steps / k)`` in the reference)."""
    return [steps // 10, steps // 8, steps // 4, steps // 2]


class _FullSetContrast(torch.autograd.Function):
    """``Σ_i −log softmax((a_i/τ)·bᵀ)[t_i]`` with its gradients taken chunk by chunk in the forward pass.

    ``∂/∂logits = softmax − onehot(t)``, so each ``[chunk, n_b]`` block yields its share of ``∂a`` and ``∂b``
    while it is alive; the backward pass only scales them. This replaces recomputing every block under
    checkpointing (one ``[chunk, n_b]`` block alive either way) and skips ``∂b`` when ``b`` needs no gradient."""

    @staticmethod
    def forward(ctx, a, b, targets, tau, chunk, grad_a, grad_b):  # type: ignore[override]
        total = torch.zeros((), dtype=a.dtype, device=a.device)
        da = torch.zeros_like(a) if grad_a else None
        db = torch.zeros_like(b) if grad_b else None
        for start in range(0, a.shape[0], chunk):
            rows, tg = a[start : start + chunk] / tau, targets[start : start + chunk]
            logits = rows @ b.T
            lse = torch.logsumexp(logits, dim=1)
            total = total + (lse - logits.gather(1, tg[:, None]).squeeze(1)).sum()
            if grad_a or grad_b:
                delta = torch.exp(logits.sub_(lse[:, None]))
                delta[torch.arange(len(tg), device=tg.device), tg] -= 1.0
                if grad_a:
                    da[start : start + chunk] = (delta @ b) / tau
                if grad_b:
                    db.addmm_(delta.T, rows)
        ctx.save_for_backward(*(g for g in (da, db) if g is not None))
        ctx.grads = (grad_a, grad_b)
        return total

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        saved = list(ctx.saved_tensors)
        grad_a, grad_b = ctx.grads
        da = grad_out * saved.pop(0) if grad_a else None
        db = grad_out * saved.pop(0) if grad_b else None
        return da, db, None, None, None, None, None


def full_set_contrast(
    anchor: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor, tau: float, chunk: int = 4096
) -> torch.Tensor:
    """``mean_i −log e^{cos(a_i, b_{t_i})/τ} / Σ_j e^{cos(a_i, b_j)/τ}`` over all candidates ``b``.

    DiffMM ``contrastLoss`` (anchors = the batch rows of one view) and MDMNS ``info_nce_loss`` (anchors = all
    rows, ``t_i = i``). Computed ``chunk`` anchors at a time; the gradients are formed with each chunk
    (:class:`_FullSetContrast`), so one ``[chunk, n_b]`` block is alive and none is computed twice."""
    a = F.normalize(anchor.float(), dim=1)
    b = F.normalize(candidates.float(), dim=1)
    grad = torch.is_grad_enabled()
    total = _FullSetContrast.apply(
        a, b, targets, tau, chunk, grad and a.requires_grad, grad and b.requires_grad
    )
    return total / a.shape[0]


def noisy_copies(
    x: torch.Tensor, levels: list[int], generator: torch.Generator | None = None
) -> list[torch.Tensor]:
    """``x + σ·ε`` for each level σ (ε standard normal, a fresh draw per level), without gradient."""
    with torch.no_grad():
        return [x + level * torch.randn(x.shape, generator=generator, device=x.device) for level in levels]


def multilevel_contrast(
    items: torch.Tensor,
    levels: list[int],
    tau: float,
    chunk: int = 4096,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``Σ_σ c(I, sg(I + σ ε))``: each item's own noisy copy is its positive, the other copies negatives.

    A level σ = 0 (``⌊T/10⌋`` and ``⌊T/8⌋`` for T < 8, as in the published T = 5) copies ``I`` exactly, so its
    term is computed once and counted once per such level (its noise is still drawn, keeping the random stream)."""
    targets = torch.arange(items.shape[0], device=items.device)
    copies = noisy_copies(items, levels, generator)
    zero = sum(1 for level in levels if level == 0)
    total = sum(
        full_set_contrast(items, copy, targets, tau, chunk)
        for level, copy in zip(levels, copies, strict=True)
        if level != 0
    )
    if zero:
        total = total + zero * full_set_contrast(items, copies[levels.index(0)], targets, tau, chunk)
    return total


def generated_graph(
    top_items: torch.Tensor, keep: torch.Tensor, n_users: int, n_items: int, keep_rate: float
) -> SparseOperator:
    """``D^-1/2 (B + I) D^-1/2`` of the bipartite graph user u -> ``top_items[u]``, then edge dropout: the
    coalesced entries where ``keep`` is False are removed, the others divided by ``keep_rate``."""
    users = torch.arange(n_users, device=top_items.device).repeat_interleave(top_items.shape[1])
    full = ui_adjacency(users, top_items.reshape(-1), n_users, n_items, "sym_self")
    idx, val = full.indices(), full.values()
    if keep.numel() != val.numel():
        raise ValueError(f"edge mask has {keep.numel()} entries for {val.numel()} graph entries")
    n = n_users + n_items
    return SparseOperator(sparse_matrix(idx[0, keep], idx[1, keep], val[keep] / keep_rate, (n, n)))


@register
class MDMNS(MDMNSSpec, MultimodalModel):
    """Diffusion-generated modality U-I graphs, per-modality and fused GCN views, BPR per modality view and
    DiffMM or multi-level-negative contrastive learning."""

    ui_norm = "sym_self"

    def __init__(self, data: TrainData, config: dict[str, Any]):
        super().__init__(data, config)
        if config["rebuild_k"] > data.n_items:
            raise TrainError(
                f"rebuild_k={config['rebuild_k']}: must be at most the number of items ({data.n_items})"
            )
        dim = config["embedding_size"]
        n_mods = len(self.modalities)
        self.user_embedding = id_embedding(self.n_users, dim)
        self.item_embedding = id_embedding(self.n_items, dim)
        for m, modality in enumerate(self.modalities):
            self.register_buffer(f"feature_{m}", data.feature(modality).float().clone(), persistent=False)
        linear = config["trans"] == 1
        self.projections = feature_projections(data, self.modalities, dim, bias=linear)
        if not linear:
            for layer in self.projections:
                nn.init.xavier_uniform_(layer.weight)
        self.modal_weight = nn.Parameter(torch.full((n_mods,), 1.0 / n_mods))
        self.adjacency = data.ui_adjacency("sym_self")
        self.denoisers = nn.ModuleList(
            Denoiser(self.n_items, list(config["dims"]), config["time_embedding_size"], config["norm"])
            for _ in self.modalities
        )
        self.diffusion = GaussianDiffusion(
            config["noise_scale"],
            config["noise_min"],
            config["noise_max"],
            config["steps"],
            device=data.device,
        )
        self.denoise_optimizer = torch.optim.Adam(
            self.denoisers.parameters(), lr=config["lr"], weight_decay=0
        )
        self.train_pairs = data.train
        every = config["diff_every"] or round(len(data.train) / max(self.n_users, 1))
        self.diff_every = max(int(every), 1)
        k = config["rebuild_k"]
        self.graph_nnz = 2 * self.n_users * k + self.n_users + self.n_items
        self.register_buffer("top_items", torch.zeros(n_mods, self.n_users, k, dtype=torch.long))
        self.register_buffer("edge_keep", torch.ones(n_mods, self.graph_nnz, dtype=torch.bool))
        self.register_buffer("generated", torch.zeros((), dtype=torch.bool))
        self._graphs: list[SparseOperator] | None = None
        self._aux_count = 0
        self._aux_last: dict[str, torch.Tensor] = {}
        self.register_load_state_dict_post_hook(lambda module, _: setattr(module, "_graphs", None))

    def features(self) -> list[torch.Tensor]:
        """Raw feature matrices ``X_m`` (constants)."""
        return [getattr(self, f"feature_{m}") for m in range(len(self.modalities))]

    def modal_features(self) -> list[torch.Tensor]:
        """``f_m``: ``leaky_relu(X_m W_m, 0.2)`` (trans 0) or ``Lin_m(X_m)`` (trans 1)."""
        out = [proj(x) for proj, x in zip(self.projections, self.features(), strict=True)]
        if self.config["trans"] == 0:
            out = [F.leaky_relu(f, 0.2) for f in out]
        return out

    def main_parameters(self) -> Iterator[nn.Parameter]:
        """Everything except the denoisers (trained in :meth:`auxiliary_step`)."""
        return (p for name, p in self.named_parameters() if not name.startswith("denoisers."))

    def train_rows(self, users: torch.Tensor) -> torch.Tensor:
        """Dense binary training rows ``x₀ [len(users), N]`` of ``users``."""
        rows, items = self.train_pairs.rows_of(users)
        x0 = torch.zeros(len(users), self.n_items, device=users.device)
        x0[rows, items] = 1.0
        return x0

    # diffusion: denoiser training and graph generation

    def denoiser_losses(
        self, x0: torch.Tensor, rng: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Σ_m mean L_diff, Σ_m mean L_gc)`` on rows ``x0``, with the recommender's item embeddings and
        modality features detached (modality-aware graph conditioning); steps, noise and dropout from ``rng``."""
        with torch.no_grad():
            target = x0 @ self.item_embedding
            feats = self.modal_features()
        diff = torch.zeros((), device=x0.device)
        gc = torch.zeros((), device=x0.device)
        for denoiser, feat in zip(self.denoisers, feats, strict=True):
            denoise = functools.partial(denoiser, rng=rng)
            weighted, x0_hat = self.diffusion.training_losses(denoise, x0, generator=rng)
            diff = diff + weighted.mean()
            gc = gc + (x0_hat @ feat - target).pow(2).mean(1).mean()
        return diff, gc

    def auxiliary_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One Adam step of the denoisers on the batch's distinct users, every ``diff_every``-th batch."""
        step, self._aux_count = self._aux_count, self._aux_count + 1
        if step % self.diff_every:
            return self._aux_last
        x0 = self.train_rows(torch.unique(batch.users))
        diff, gc = self.denoiser_losses(x0, batch.rng)
        self.denoise_optimizer.zero_grad(set_to_none=True)
        (diff + self.config["e_loss"] * gc).backward()
        self.denoise_optimizer.step()
        self._aux_last = {"diff": diff.detach(), "gc": gc.detach()}
        return self._aux_last

    @torch.no_grad()
    def regenerate(self, rng: torch.Generator | None) -> None:
        """Denoise every user's row (blocks of ``gen_block`` users), keep the top ``rebuild_k`` items per user
        and modality, and draw the edge-dropout masks from ``rng`` (the trainer's generator; None only with
        ``keepRate`` 1, where nothing is drawn)."""
        cfg = self.config
        device = self.user_embedding.device
        block = cfg["gen_block"]
        for start in range(0, self.n_users, block):
            users = torch.arange(start, min(start + block, self.n_users), device=device)
            x0 = self.train_rows(users)
            for m, denoiser in enumerate(self.denoisers):
                scores = self.diffusion.p_sample(
                    denoiser, x0, cfg["sampling_steps"], cfg["sampling_noise"], generator=rng
                )
                self.top_items[m, start : start + len(users)] = torch.topk(
                    scores, cfg["rebuild_k"], dim=1
                ).indices
        if cfg["keepRate"] >= 1:
            self.edge_keep.fill_(True)
        elif rng is None:
            raise TrainError("MDMNS edge dropout needs the trainer's generator (on_epoch_start) before use")
        else:
            self.edge_keep.copy_(
                torch.rand(self.edge_keep.shape, generator=rng, device=device) < cfg["keepRate"]
            )
        self.generated.fill_(True)
        self._graphs = None

    def modal_graphs(self) -> list[SparseOperator]:
        """The generated (edge-dropped) modality U-I graphs ``G_m``; generated on first use if needed."""
        if self._graphs is None:
            if not bool(self.generated):
                self.regenerate(None)
            self._graphs = [
                generated_graph(top, keep, self.n_users, self.n_items, self.config["keepRate"])
                for top, keep in zip(self.top_items, self.edge_keep, strict=True)
            ]
        return self._graphs

    def on_epoch_start(self, epoch: int, rng: torch.Generator) -> None:
        """Regenerate the modality graphs from the denoisers; restart the denoiser step counter."""
        self._aux_count = 0
        self.regenerate(rng)

    # recommender

    def _readout(self, view: torch.Tensor) -> torch.Tensor:
        """``Σ_{l=0..L} Â^l V + ris_lambda·n(V)``."""
        layer, total = view, view
        for _ in range(self.config["ui_layers"]):
            layer = spmm(self.adjacency, layer)
            total = total + layer
        return total + self.config["ris_lambda"] * F.normalize(view, dim=1)

    def _two_hop(self, items: torch.Tensor) -> torch.Tensor:
        """``Â[e_U; X] + Â[(Â[e_U; X])_U; e_I]``: item side ``X`` to users, back with the ID embeddings."""
        first = spmm(self.adjacency, torch.cat([self.user_embedding, items]))
        return first + spmm(self.adjacency, torch.cat([self.split_nodes(first)[0], self.item_embedding]))

    def views(self) -> list[torch.Tensor]:
        """``[z(E_f), z(E_m) for each modality]``, each ``[M + N, d]`` (users first)."""
        lam = self.config["ris_adj_lambda"]
        ego = torch.cat([self.user_embedding, self.item_embedding])
        modal = []
        for feat, graph in zip(self.modal_features(), self.modal_graphs(), strict=True):
            modal.append(self._two_hop(F.normalize(feat, dim=1)) + lam * spmm(graph, ego))
        weight = torch.softmax(self.modal_weight, 0)
        mixed = sum(w * e for w, e in zip(weight, modal, strict=True))
        fused = self._two_hop(F.normalize(mixed[self.n_users :], dim=1)) + lam * spmm(self.adjacency, ego)
        return [self._readout(v) for v in (fused, *modal)]

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.cat(self.views(), dim=1)
        return self.split_nodes(z)

    def contrast_views(self) -> list[torch.Tensor]:
        """DiffMM CL views ``C_m = Σ_{l=0..L} Â^l G_m[e_U; n(f_m)]``."""
        out = []
        for feat, graph in zip(self.modal_features(), self.modal_graphs(), strict=True):
            layer = spmm(graph, torch.cat([self.user_embedding, F.normalize(feat, dim=1)]))
            total = layer
            for _ in range(self.config["ui_layers"]):
                layer = spmm(self.adjacency, layer)
                total = total + layer
            out.append(total)
        return out

    def contrastive(self, batch: Batch, views: list[torch.Tensor]) -> torch.Tensor:
        """The unweighted ``L_cl`` of ``cl_method`` (see the module docstring)."""
        tau, chunk, m = self.config["tau"], self.config["cl_chunk"], self.n_users
        if self.config["cl_method"] == 0:
            total = torch.zeros((), device=views[0].device)
            for a, b in itertools.combinations(self.contrast_views(), 2):
                total = total + full_set_contrast(a[:m][batch.users], b[:m], batch.users, tau, chunk)
                total = total + full_set_contrast(a[m:][batch.pos_items], b[m:], batch.pos_items, tau, chunk)
            return total
        fused, modal = views[0], views[1:]
        users = torch.arange(self.n_users, device=fused.device)
        items = torch.arange(self.n_items, device=fused.device)
        total = torch.zeros((), device=fused.device)
        for view in modal:
            total = total + full_set_contrast(fused[:m], view[:m], users, tau, chunk)
            total = total + full_set_contrast(fused[m:], view[m:], items, tau, chunk)
        levels = noise_levels(self.config["steps"])
        for view in modal:
            total = total + multilevel_contrast(view[m:], levels, tau, chunk, batch.rng)
        return total

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        views = self.views()
        m = self.n_users
        rank = torch.zeros((), device=views[0].device)
        for view in views[1:]:
            u = view[:m][batch.users]
            pos, neg = view[m:][batch.pos_items], view[m:][batch.neg_items]
            rank = rank + bpr_of(u, pos, neg)
        reg = self.config["reg_weight"] * (
            self.user_embedding.pow(2).sum() + self.item_embedding.pow(2).sum()
        )
        weight = self.config["cl_weight"]
        cl = weight * self.contrastive(batch, views) if weight else torch.zeros((), device=reg.device)
        return {"loss": rank + reg + cl, "bpr": rank, "reg": reg, "cl": cl}
