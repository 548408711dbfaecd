"""SLMRec (Tao et al., TMM 2022): per-modality LightGCN graphs sharing user embeddings, in-batch InfoNCE, and a
self-supervised task over the modalities.

Equations (docs/models/slmrec.md; K = 1 + number of feature modalities, block 0 is the ID block)::

    x_id = e_I;   x_m = Dense_m(normalize(X_m)) (→ d, X_m constant)
    [U_m; I_m] = LGN_{ui_layers}([e_U; x_m]) over Â = D^-1/2 A D^-1/2   (e_U shared by every modality graph)
    z_u = W_u [U_id; U_m1; …],  z_i = W_i [I_id; I_m1; …]             (concat fusion, Linear(K·d → d))
    L_main = InfoNCE(z_u, z_i; rec_tau)   in-batch, on L2-normalised rows: the other positives of the batch are
                                          the negatives (the sampler's negative items are not used)
    L      = L_main + cl_weight · L_ssl;   score = z_uᵀ z_i

``ssl_task`` (views compared at the batch's users and positive items):

- ``FAC`` (fine and coarse): a chain over the modalities in the original order image → audio → text (others
  after, sorted). With ``a_0 = I_id`` and ``a_k = g_k(a_{k-1})``, ``L_ssl = Σ_k CE(a_k g_{m_k}(I_{m_k})ᵀ / tau,
  diag)`` on raw (not normalised) rows; the text level projects to d/2, every other level to d.
- ``FD``: two views ``dropout_propagate`` (``dropout`` after every propagation, inverted scaling as
  ``nn.Dropout``), ``L_ssl = InfoNCE(z_u¹, z_u²; tau) + InfoNCE(z_i¹, z_i²; tau)``.
- ``FM``: view v zeroes the item input ``x_m`` of one block (two distinct blocks drawn uniformly among the K,
  the ID block included); same contrast. ``FD+FM``: masking and dropout together.

The propagation runs once on the K blocks side by side (``[(M+N), K·d]``): LightGCN and elementwise dropout act
column-wise, so this equals K separate graphs. The original code's choices (sigmoid score, test-set selection,
mixed FM views, MMRec's extra ``g_iv_iva`` step), what we follow, the memory cost and measured numbers:
docs/models/slmrec.md."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmtrain.data.loader import TrainData
from mmtrain.data.sampler import Batch
from mmtrain.graph.propagate import lightgcn_propagate
from mmtrain.models.augment import distinct_choices, dropout_propagate, mask_modalities
from mmtrain.models.base import id_embedding
from mmtrain.models.losses import info_nce
from mmtrain.models.multimodal import MultimodalModel
from mmtrain.models.registry import register
from mmtrain.models.specs.slmrec import SLMRecSpec

FAC_ORDER = ("image", "audio", "text")


def fac_order(modalities: Sequence[str]) -> list[str]:
    """The FAC chain order: image → audio → text as in the reference, then any other modality, sorted."""
    known = [m for m in FAC_ORDER if m in modalities]
    return known + sorted(m for m in modalities if m not in FAC_ORDER)


def fac_loss(
    item_id: torch.Tensor,
    item_modal: Sequence[torch.Tensor],
    chain: Sequence[nn.Module],
    heads: Sequence[nn.Module],
    temperature: float,
) -> torch.Tensor:
    """``Σ_k CE(a_k b_kᵀ / τ, diag)`` with ``a_k = chain_k(a_{k-1})``, ``a_0 = item_id``, ``b_k = heads_k(item_modal_k)``:
    each level aligns the ID-side chain, coarser at every step, with one modality; no normalisation."""
    labels = torch.arange(item_id.shape[0], device=item_id.device)
    x, total = item_id, item_id.new_zeros(())
    for rep, step, head in zip(item_modal, chain, heads, strict=True):
        x = step(x)
        total = total + F.cross_entropy(x @ head(rep).T / temperature, labels)
    return total


def _linear(d_in: int, d_out: int) -> nn.Linear:
    """A Linear layer with xavier-uniform weights (bias: torch's default), as every layer of the reference."""
    layer = nn.Linear(d_in, d_out)
    nn.init.xavier_uniform_(layer.weight)
    return layer


@register
class SLMRec(SLMRecSpec, MultimodalModel):
    """Concat-fused per-modality LightGCN graphs; in-batch InfoNCE plus a FAC/FD/FM self-supervised task."""

    ui_norm = "sym"

    def __init__(self, data: TrainData, config: dict[str, Any]):
        super().__init__(data, config)
        dim = config["embedding_size"]
        self.dim = dim
        self.modalities = fac_order(self.modalities)
        self.n_blocks = 1 + len(self.modalities)
        self.user_embedding = id_embedding(self.n_users, dim)
        self.item_embedding = id_embedding(self.n_items, dim)
        for m in self.modalities:
            self.register_buffer(f"feature_{m}", F.normalize(data.feature(m), dim=1), persistent=False)
        self.dense = nn.ModuleList([_linear(data.feature(m).shape[1], dim) for m in self.modalities])
        self.user_fusion = _linear(self.n_blocks * dim, dim)
        self.item_fusion = _linear(self.n_blocks * dim, dim)
        self.adjacency = data.ui_adjacency("sym")
        if config["ssl_task"] == "FAC":
            widths = [dim // 2 if m == "text" else dim for m in self.modalities]
            self.fac_chain = nn.ModuleList(
                [_linear(d_in, d_out) for d_in, d_out in zip([dim, *widths[:-1]], widths, strict=True)]
            )
            self.fac_heads = nn.ModuleList([_linear(dim, d_out) for d_out in widths])

    def item_inputs(self) -> list[torch.Tensor]:
        """Per-block item inputs ``[e_I, Dense_m(normalize(X_m)), …]``."""
        features = (getattr(self, f"feature_{m}") for m in self.modalities)
        return [self.item_embedding, *(dense(x) for dense, x in zip(self.dense, features, strict=True))]

    def propagate(
        self, item_inputs: Sequence[torch.Tensor], dropout: float = 0.0, rng: torch.Generator | None = None
    ) -> torch.Tensor:
        """``[U; I]`` of all K blocks side by side, ``[(M+N), K·d]`` (optionally with per-layer dropout, drawn
        from ``rng``)."""
        ego = torch.cat([self.user_embedding.repeat(1, self.n_blocks), torch.cat(list(item_inputs), 1)])
        if dropout > 0.0:
            return dropout_propagate(self.adjacency, ego, self.config["ui_layers"], dropout, rng)
        return lightgcn_propagate(self.adjacency, ego, self.config["ui_layers"])

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        user_out, item_out = self.split_nodes(self.propagate(self.item_inputs()))
        return self.user_fusion(user_out), self.item_fusion(item_out)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        users, items = batch.users, batch.pos_items + self.n_users
        inputs = self.item_inputs()
        out = self.propagate(inputs)
        main = info_nce(self.user_fusion(out[users]), self.item_fusion(out[items]), self.config["rec_tau"])
        ssl = self.ssl_loss(out, inputs, users, items, batch.rng)
        total = main + self.config["cl_weight"] * ssl
        return {"loss": total, "main": main, "ssl": ssl}

    def ssl_loss(
        self,
        out: torch.Tensor,
        inputs: list[torch.Tensor],
        users: torch.Tensor,
        items: torch.Tensor,
        rng: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The ``ssl_task`` loss at the batch's users and items (``items`` as rows of ``out``); FD/FM draw from
        ``rng``."""
        task, tau = self.config["ssl_task"], self.config["tau"]
        if task == "FAC":
            blocks = out[items].split(self.dim, dim=1)
            return fac_loss(blocks[0], blocks[1:], self.fac_chain, self.fac_heads, tau)
        if "FM" in task:
            view_inputs = [mask_modalities(inputs, [k]) for k in distinct_choices(self.n_blocks, 2, rng)]
        else:
            view_inputs = [inputs, inputs]
        p = self.config["dropout"] if "FD" in task and self.training else 0.0
        views = [self.propagate(v, p, rng) for v in view_inputs]
        u1, u2 = (self.user_fusion(v[users]) for v in views)
        i1, i2 = (self.item_fusion(v[items]) for v in views)
        return info_nce(u1, u2, tau) + info_nce(i1, i2, tau)
