"""LATTICE (Zhang et al., MM 2021): a learned item-item graph with a skip connection to the kNN graph of the
raw features, convolved over item ID embeddings and added to a LightGCN backbone.

Equations (docs/models/lattice.md; the graphs: docs/graphs.md "LATTICE's learned graph")::

    orig    = Σ_m w_m Â_m            Â_m = sym-normalised top-k cosine graph of the raw features (frozen)
    P_m     = Linear_m(X_m)          X_m trainable raw features
    learned = symnorm(Σ_m w_m kNN_k(cos(P_m)))      combined first, then normalised
    A       = (1 − λ)·learned + λ·orig,   w = softmax(modal_weight)
    h       = A^{item_layers} e_I
    [Z_U; Z̄_I] = LGN_{ui_layers}([e_U; e_I]) over D^-1 (A_ui + I);   Z_I = Z̄_I + normalize(h)
    L       = L_bpr + reg_weight·(½‖u‖² + ½‖p‖² + ½‖n‖²)/B    (final embeddings)

``A`` is rebuilt (with gradients) at the first batch of every epoch and at every evaluation; the other batches
use it detached, as in the original code. The learned graph is kept as sparse top-k rows, never N x N
(``knn_block`` rows per similarity block). Memory, cost and measured numbers: docs/models/lattice.md."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmtrain.data.loader import TrainData
from mmtrain.data.sampler import Batch
from mmtrain.graph.knn import knn_adjacency
from mmtrain.graph.learned import learned_knn, propagate_rows, sym_normalize
from mmtrain.graph.propagate import lightgcn_propagate, spmm
from mmtrain.models.base import id_embedding
from mmtrain.models.losses import bpr_of, l2_squared
from mmtrain.models.multimodal import MultimodalModel, feature_projections, trainable_features
from mmtrain.models.registry import register
from mmtrain.models.specs.lattice import LATTICESpec

ItemGraph = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@register
class LATTICE(LATTICESpec, MultimodalModel):
    """Learned + kNN item graph (skip weight λ) over item IDs, added normalised to LightGCN item outputs."""

    ui_norm = "rw_self"

    def __init__(self, data: TrainData, config: dict[str, Any]):
        super().__init__(data, config)
        dim = config["embedding_size"]
        self.user_embedding = id_embedding(self.n_users, dim)
        self.item_embedding = id_embedding(self.n_items, dim)
        self.features = trainable_features(data, self.modalities)
        self.projections = feature_projections(data, self.modalities, config["feat_embed_dim"])
        self.modal_weight = nn.Parameter(torch.full((len(self.modalities),), 0.5))
        k = config["knn_k"]
        self.orig_graphs = [
            knn_adjacency(*data.item_knn(m, k, include_self=True), norm="sym") for m in self.modalities
        ]
        self.adjacency = data.ui_adjacency("rw_self")
        self._graph: ItemGraph | None = None
        self._rebuild = True

    def on_epoch_start(self, epoch: int, rng: torch.Generator) -> None:
        """The next training batch rebuilds the learned graph with gradients."""
        self._rebuild = True

    def build_graph(self) -> ItemGraph:
        """``(indices, values, w)``: the normalised learned graph as rows, and the modality weights."""
        weights = torch.softmax(self.modal_weight, 0)
        block = self.config["knn_block"] or None
        parts = [
            learned_knn(projection(feature), self.config["knn_k"], block)
            for feature, projection in zip(self.features, self.projections, strict=True)
        ]
        indices = torch.cat([idx for idx, _ in parts], 1)
        values = torch.cat([w * val for w, (_, val) in zip(weights, parts, strict=True)], 1)
        return indices, sym_normalize(indices, values), weights

    def item_graph(self) -> ItemGraph:
        """The graph of this step: rebuilt at evaluation and at an epoch's first batch, else the detached one."""
        if self._rebuild or not self.training or self._graph is None:
            graph = self.build_graph()
            self._graph = (graph[0], graph[1].detach(), graph[2].detach())
            if self.training:
                self._rebuild = False
            return graph
        return self._graph

    def graph_embedding(self) -> torch.Tensor:
        """``h = A^L e_I`` with ``A = (1 − λ)·learned + λ·Σ_m w_m Â_m`` applied as its two sparse parts."""
        indices, values, weights = self.item_graph()
        lam = self.config["lambda_coeff"]
        h = self.item_embedding
        for _ in range(self.config["item_layers"]):
            orig = sum(w * spmm(g, h) for w, g in zip(weights, self.orig_graphs, strict=True))
            h = (1 - lam) * propagate_rows(indices, values, h) + lam * orig
        return h

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.graph_embedding()
        ego = torch.cat([self.user_embedding, self.item_embedding])
        user_z, item_z = self.split_nodes(lightgcn_propagate(self.adjacency, ego, self.config["ui_layers"]))
        return user_z, item_z + F.normalize(h, dim=1)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        user_z, item_z = self.forward()
        u, p, n = user_z[batch.users], item_z[batch.pos_items], item_z[batch.neg_items]
        rank = bpr_of(u, p, n)
        reg = self.config["reg_weight"] * l2_squared(u, p, n)
        return {"loss": rank + reg, "bpr": rank, "reg": reg}
