"""MMGCN (Wei et al., MM 2019) as in MMRec ``mmgcn.py``: one GCN per modality over the user-item graph.

Equations (docs/models/mmgcn.md), per modality m over nodes ``[users; items]``::

    x⁰  = normalize([P_m ; MLP_m(X_m)])     P_m: user preference, M x d_in; MLP_m only for ``mlp_modalities``
    for l = 1..ui_layers:
        h   = leaky_relu(Ā (x W_l))          Ā = D^-1 A: mean over the U-I neighbours (both edge directions)
        x̂  = leaky_relu(Lin_l(x)) + e_id     e_id: (M+N) x d ID embeddings, shared by all modalities
        x   = leaky_relu(G_l([h ; x̂]))       concatenation gate
    z   = mean_m x_m^L
    L   = L_bpr(z) + reg_weight · ( mean(e_id[u]² + e_id[i]²) + Σ_{m with MLP} mean(P_m²) )

``d_in`` is ``dim_latent`` (256) for a modality in ``mlp_modalities`` and the raw feature size otherwise; from
layer 2 on everything is ``embedding_size`` (64). ``train_id_embedding`` False keeps ``e_id`` and ``P_m`` as
fixed buffers (MMRec never registers them). The original code's quirks (truthy ``'False'`` gates, hard-coded
depth, stale scores), what we follow, the memory cost and our measured numbers: docs/models/mmgcn.md."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmtrain.data.loader import TrainData
from mmtrain.data.sampler import Batch
from mmtrain.graph.adjacency import SparseOperator
from mmtrain.graph.propagate import spmm
from mmtrain.models.losses import bpr_of
from mmtrain.models.multimodal import MultimodalModel, listed
from mmtrain.models.registry import register
from mmtrain.models.specs.mmgcn import MMGCNSpec


def projected_modalities(value: str, modalities: list[str]) -> list[str]:
    """The modalities whose features go through ``MLP_m``: ``all``, ``none`` or the listed ones present."""
    if value.strip() == "all":
        return list(modalities)
    if value.strip() == "none":
        return []
    return [m for m in modalities if m in listed(value)]


def mmgcn_layer(
    adjacency: SparseOperator,
    x: torch.Tensor,
    conv_weight: torch.Tensor,
    linear: nn.Linear,
    gate: nn.Linear,
    id_embedding: torch.Tensor,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """One MMGCN layer: ``leaky_relu(G([leaky_relu(Ā x W) ; leaky_relu(Lin x) + e_id]))``.

    With ``rows`` only those output rows are computed: the propagation still reads every node, but the
    linear map and the gate (three quarters of a 64-d layer's cost) run on the requested rows alone."""
    h = spmm(adjacency, x @ conv_weight)
    if rows is not None:
        h, x, id_embedding = h[rows], x[rows], id_embedding[rows]
    x_hat = F.leaky_relu(linear(x)) + id_embedding
    return F.leaky_relu(gate(torch.cat([F.leaky_relu(h), x_hat], dim=1)))


class ModalityGCN(nn.Module):
    """The GCN of one modality: preference + (projected) features, then ``n_layers`` :func:`mmgcn_layer`."""

    def __init__(
        self,
        n_users: int,
        feature_dim: int,
        dim: int,
        dim_latent: int | None,
        n_layers: int,
        trainable_preference: bool,
    ):
        super().__init__()
        d_in = dim_latent or feature_dim
        preference = nn.init.xavier_normal_(torch.empty(n_users, d_in))
        if trainable_preference:
            self.preference = nn.Parameter(preference)
        else:
            self.register_buffer("preference", preference)
        self.mlp = nn.Linear(feature_dim, dim_latent) if dim_latent else None
        sizes = [d_in] + [dim] * (n_layers - 1)
        self.conv_weights = nn.ParameterList(
            [nn.Parameter(nn.init.xavier_normal_(torch.empty(s, s))) for s in sizes]
        )
        self.linears = nn.ModuleList([nn.Linear(s, dim) for s in sizes])
        self.gates = nn.ModuleList([nn.Linear(s + dim, dim) for s in sizes])
        for linear in self.linears:
            nn.init.xavier_normal_(linear.weight)
        nn.init.xavier_normal_(self.gates[0].weight)

    def forward(
        self,
        adjacency: SparseOperator,
        features: torch.Tensor,
        id_embedding: torch.Tensor,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The last layer's output for every node, or for ``rows`` only (the last layer computed on them)."""
        items = self.mlp(features) if self.mlp is not None else features
        x = F.normalize(torch.cat([self.preference, items]), dim=1)
        last = len(self.gates) - 1
        layers = zip(self.conv_weights, self.linears, self.gates, strict=True)
        for depth, (conv_weight, linear, gate) in enumerate(layers):
            x = mmgcn_layer(
                adjacency, x, conv_weight, linear, gate, id_embedding, rows if depth == last else None
            )
        return x


@register
class MMGCN(MMGCNSpec, MultimodalModel):
    """Per-modality mean-aggregation GCNs with ID-embedding skip and concat gates, averaged over modalities."""

    ui_norm = "mean"

    def __init__(self, data: TrainData, config: dict[str, Any]):
        super().__init__(data, config)
        dim = config["embedding_size"]
        trainable = config["train_id_embedding"]
        self.projected = projected_modalities(config["mlp_modalities"], self.modalities)
        self.adjacency = data.ui_adjacency("mean")
        id_embedding = nn.init.xavier_normal_(torch.empty(self.n_users + self.n_items, dim))
        if trainable:
            self.id_embedding = nn.Parameter(id_embedding)
        else:
            self.register_buffer("id_embedding", id_embedding)
        for m in self.modalities:
            self.register_buffer(f"features_{m}", data.feature(m), persistent=False)
        self.gcns = nn.ModuleDict(
            {
                m: ModalityGCN(
                    self.n_users,
                    data.feature(m).shape[1],
                    dim,
                    config["dim_latent"] if m in self.projected else None,
                    config["ui_layers"],
                    trainable,
                )
                for m in self.modalities
            }
        )

    def node_outputs(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``z`` over ``[users; items]``, or over the node ``rows`` only (see :func:`mmgcn_layer`)."""
        return sum(
            self.gcns[m](self.adjacency, getattr(self, f"features_{m}"), self.id_embedding, rows)
            for m in self.modalities
        ) / len(self.modalities)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split_nodes(self.node_outputs())

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        # the loss reads z at the batch's users and items only: the last layer is computed on those rows
        b = len(batch.users)
        nodes = torch.cat([batch.users, self.n_users + batch.pos_items, self.n_users + batch.neg_items])
        rows, inverse = torch.unique(nodes, return_inverse=True)
        z = self.node_outputs(rows)[inverse]
        u = z[:b]
        rank = bpr_of(u, z[b : 2 * b], z[2 * b :])
        e_u = self.id_embedding[batch.users]
        e_p = self.id_embedding[self.n_users + batch.pos_items]
        e_n = self.id_embedding[self.n_users + batch.neg_items]
        # the reference's mean over the 2B (user, item) rows: each user appears once with p, once with n
        id_reg = e_u.pow(2).mean() + 0.5 * (e_p.pow(2).mean() + e_n.pow(2).mean())
        pref_reg = sum((self.gcns[m].preference.pow(2).mean() for m in self.projected), e_u.new_zeros(()))
        reg = self.config["reg_weight"] * (id_reg + pref_reg)
        return {"loss": rank + reg, "bpr": rank, "reg": reg}
