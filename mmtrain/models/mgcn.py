"""MGCN (Yu et al., MM 2023): behaviour-purified modality views on frozen kNN item graphs, fused by attention into
a common part plus user-preference-gated specific parts, added to a LightGCN backbone, with a contrastive loss.

Equations (docs/models/mgcn.md; the graphs: docs/graphs.md), per modality m::

    Ẽ_m  = e_I ⊙ σ(W_m Lin_m(X_m) + b_m)                    behaviour-guided purifier
    C    = LGN_{ui_layers}([e_U; e_I]) over Â = D^-1/2 A D^-1/2         content (U-I view)
    H_m  = Â_m^{item_layers} Ẽ_m   (frozen sym kNN graph of raw X_m);   M_m = [R̃ H_m; H_m],  R̃ = D_u^-1/2 R D_i^-1/2
    α    = softmax_m(q(M_m)),  q(x) = w₂ᵀ tanh(W₁x + b₁);    common = Σ_m α_m M_m
    side = (Σ_m σ(W'_m C + b'_m) ⊙ (M_m − common) + common) / (n_mods + 1)
    Z    = C + side
    L    = L_bpr(Z) + reg_weight·(½‖u‖² + ½‖p‖² + ½‖n‖²)/B + cl_weight·[InfoNCE(side_I[p], C_I[p]) + InfoNCE(side_U[u], C_U[u])]

InfoNCE is in-batch on cosines with τ = 0.2 (hard-coded in the original code). The raw features are trainable
and B in the L2 term is the configured batch size, as in the original; the image+text ``/3`` becomes
``/(n_mods + 1)``; the softmax runs over the modalities (MMRec), not over the nodes (the authors' file). Why, the
memory cost and measured numbers: docs/models/mgcn.md.

:class:`~mmtrain.models.soil.SOIL` reuses this forward: it overrides the U-I operators (:meth:`ui_operators`),
the item graphs (:meth:`item_graphs_of`), the side combination (:meth:`combine`), the frozen features and the
loss."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from mmtrain.data.loader import TrainData
from mmtrain.data.sampler import Batch
from mmtrain.graph.adjacency import SparseOperator, bipartite_block
from mmtrain.graph.knn import knn_adjacency
from mmtrain.graph.propagate import lightgcn_propagate, spmm
from mmtrain.models.base import id_embedding
from mmtrain.models.losses import bpr_of, info_nce, l2_squared
from mmtrain.models.multimodal import MultimodalModel, feature_projections, trainable_features
from mmtrain.models.registry import register
from mmtrain.models.specs.mgcn import MGCNSpec

TEMPERATURE = 0.2


def gate(dim: int) -> nn.Sequential:
    """``σ(W x + b)``, a ``dim -> dim`` sigmoid gate."""
    return nn.Sequential(nn.Linear(dim, dim), nn.Sigmoid())


def purify(item_embedding: torch.Tensor, projected: torch.Tensor, modality_gate: nn.Module) -> torch.Tensor:
    """Behaviour-guided purifier ``Ẽ_m = e_I ⊙ σ(W_m P_m + b_m)`` with ``P_m = Lin_m(X_m)``."""
    return item_embedding * modality_gate(projected)


def attention_fusion(views: list[torch.Tensor], query: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``α = softmax_m(q(M_m))`` per row (``[n, n_mods]``) and ``common = Σ_m α_m M_m``."""
    stacked = torch.stack(views, 1)
    alpha = torch.softmax(query(stacked).squeeze(-1), dim=1)
    return alpha, (alpha.unsqueeze(-1) * stacked).sum(1)


@register
class MGCN(MGCNSpec, MultimodalModel):
    """Purified modality views on frozen kNN graphs, attention-fused and preference-gated, plus LightGCN."""

    ui_norm = "sym"
    train_features: ClassVar[bool] = True
    preference_gates: ClassVar[bool] = True

    def __init__(self, data: TrainData, config: dict[str, Any]):
        super().__init__(data, config)
        dim = config["embedding_size"]
        self.user_embedding = id_embedding(self.n_users, dim)
        self.item_embedding = id_embedding(self.n_items, dim)
        if self.train_features:
            self.features = trainable_features(data, self.modalities)
        else:
            self.frozen_features = [data.feature(m).float() for m in self.modalities]
        self.projections = feature_projections(data, self.modalities, dim)
        self.gates = nn.ModuleList([gate(dim) for _ in self.modalities])
        self.query = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False))
        if self.preference_gates:
            self.preferences = nn.ModuleList([gate(dim) for _ in self.modalities])
        self.adjacency, self.user_item = self.ui_operators(data)
        self.item_graphs = self.item_graphs_of(data)

    def ui_operators(self, data: TrainData) -> tuple[SparseOperator, SparseOperator]:
        """The U-I operator of the content view and the user side ``R̃`` of the modality views."""
        adjacency = data.ui_adjacency("sym")
        return adjacency, bipartite_block(adjacency, self.n_users)

    def item_graphs_of(self, data: TrainData) -> list[SparseOperator]:
        """Per modality the frozen sym-normalised top-k cosine graph of the raw features (self included)."""
        k = self.config["knn_k"]
        return [knn_adjacency(*data.item_knn(m, k, include_self=True), norm="sym") for m in self.modalities]

    def feature_matrices(self) -> list[torch.Tensor]:
        return list(self.features) if self.train_features else self.frozen_features

    def views(self) -> list[torch.Tensor]:
        """``M_m = [R̃ H_m; H_m]`` with ``H_m = G_m^L Ẽ_m`` for every modality."""
        out = []
        parts = zip(self.feature_matrices(), self.projections, self.gates, self.item_graphs, strict=True)
        for feature, projection, modality_gate, graph in parts:
            h = purify(self.item_embedding, projection(feature), modality_gate)
            for _ in range(self.config["item_layers"]):
                h = spmm(graph, h)
            out.append(torch.cat([spmm(self.user_item, h), h]))
        return out

    def combine(
        self, views: list[torch.Tensor], alpha: torch.Tensor, common: torch.Tensor, content: torch.Tensor
    ) -> torch.Tensor:
        """``side = (Σ_m σ(W'_m C + b'_m) ⊙ (M_m − common) + common) / (n_mods + 1)``."""
        specific = [
            pref(content) * (view - common) for view, pref in zip(views, self.preferences, strict=True)
        ]
        return (sum(specific) + common) / (len(views) + 1)

    def outputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Z, side, C)`` over the stacked ``[users; items]`` rows."""
        ego = torch.cat([self.user_embedding, self.item_embedding])
        content = lightgcn_propagate(self.adjacency, ego, self.config["ui_layers"])
        views = self.views()
        alpha, common = attention_fusion(views, self.query)
        side = self.combine(views, alpha, common, content)
        return content + side, side, content

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        z, _, _ = self.outputs()
        return self.split_nodes(z)

    def side_content_contrast(self, side: torch.Tensor, content: torch.Tensor, batch: Batch) -> torch.Tensor:
        """``InfoNCE(side_I[p], C_I[p]) + InfoNCE(side_U[u], C_U[u])`` (τ = 0.2)."""
        pos = batch.pos_items + self.n_users
        items = info_nce(side[pos], content[pos], TEMPERATURE)
        return items + info_nce(side[batch.users], content[batch.users], TEMPERATURE)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        z, side, content = self.outputs()
        u = z[batch.users]
        p, n = z[batch.pos_items + self.n_users], z[batch.neg_items + self.n_users]
        rank = bpr_of(u, p, n)
        reg = self.config["reg_weight"] * l2_squared(u, p, n, batch_size=self.config["batch_size"])
        cl = self.config["cl_weight"] * self.side_content_contrast(side, content, batch)
        return {"loss": rank + reg + cl, "bpr": rank, "reg": reg, "cl": cl}
