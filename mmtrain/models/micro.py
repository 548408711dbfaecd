"""MICRO (Zhang et al., TKDE 2022): per-modality learned item-item graphs on top of kNN graphs, attention
fusion with a contrastive loss tying each modality view to the fused one, on a LightGCN backbone.

Equations (docs/models/micro.md; the graphs: docs/graphs.md "MICRO")::

    A_m   = (1 − λ)·symnorm(kNN_k(cos(W_m X_m))) + λ·symnorm(kNN_k(cos(X_m)))      per modality
    h_m   = A_m^{item_layers} e_I
    α     = softmax_m(q(h_m)),  q(x) = w₂ᵀ tanh(W₁x + b₁);   h = Σ_m α_m h_m
    [Z_U; Z̄_I] = LGN_{ui_layers}([e_U; e_I]) over D^-1 (A_ui + I);   Z_I = Z̄_I + normalize(h)
    L_cl  = Σ_m GRACE(h_m, h)       over all items, τ = tau, one direction (mmtrain/models/grace.py)
    L     = L_bpr + reg_weight·(½Σ‖·‖²)/B + cl_weight·L_cl

The learned graphs are rebuilt with gradients at the first batch of each epoch and at every evaluation, and
used detached in between (the original schedule). ``L_cl`` averages over every item in every batch, as the
original does; ``cl_anchors=S`` averages over S items drawn uniformly per batch instead (each still contrasted
with all N items), an unbiased estimate of the same loss at S/N of its cost. Either way it is computed
``cl_chunk`` anchors at a time with its gradients accumulated in the forward pass (one ``[cl_chunk, 2N]`` block
alive, nothing recomputed): the values and gradients of autograd through the formula at less cost. Cold start
(``--split cold``): cold items have no training edges, so their scores come from ``normalize(h)``, i.e. from
their feature neighbours' ID embeddings. Memory, cost and measured numbers (warm and cold): docs/models/micro.md."""

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
from mmtrain.models.grace import grace_loss_blockwise
from mmtrain.models.losses import bpr_of, l2_squared
from mmtrain.models.multimodal import MultimodalModel, feature_projections, trainable_features
from mmtrain.models.registry import register
from mmtrain.models.specs.micro import MICROSpec

ModalGraph = tuple[torch.Tensor, torch.Tensor]


@register
class MICRO(MICROSpec, MultimodalModel):
    """Per-modality learned + kNN item graphs, attention-fused, contrastive to each modality, on LightGCN."""

    ui_norm = "rw_self"

    def __init__(self, data: TrainData, config: dict[str, Any]):
        super().__init__(data, config)
        dim = config["embedding_size"]
        self.user_embedding = id_embedding(self.n_users, dim)
        self.item_embedding = id_embedding(self.n_items, dim)
        self.features = trainable_features(data, self.modalities)
        self.projections = feature_projections(data, self.modalities, config["feat_embed_dim"])
        self.query = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False))
        k = config["knn_k"]
        self.orig_graphs = [
            knn_adjacency(*data.item_knn(m, k, include_self=True), norm="sym") for m in self.modalities
        ]
        self.adjacency = data.ui_adjacency("rw_self")
        self._graphs: list[ModalGraph] | None = None
        self._rebuild = True

    def on_epoch_start(self, epoch: int, rng: torch.Generator) -> None:
        """The next training batch rebuilds the learned graphs with gradients."""
        self._rebuild = True

    def build_graphs(self) -> list[ModalGraph]:
        """Per modality the sym-normalised learned top-k graph of ``W_m X_m`` as rows ``(indices, values)``."""
        block = self.config["knn_block"] or None
        graphs = []
        for feature, projection in zip(self.features, self.projections, strict=True):
            indices, values = learned_knn(projection(feature), self.config["knn_k"], block)
            graphs.append((indices, sym_normalize(indices, values)))
        return graphs

    def learned_graphs(self) -> list[ModalGraph]:
        """The graphs of this step: rebuilt at evaluation and at an epoch's first batch, else detached."""
        if self._rebuild or not self.training or self._graphs is None:
            graphs = self.build_graphs()
            self._graphs = [(idx, val.detach()) for idx, val in graphs]
            if self.training:
                self._rebuild = False
            return graphs
        return self._graphs

    def modality_embeddings(self) -> list[torch.Tensor]:
        """``h_m = A_m^L e_I`` for every modality, ``A_m = (1 − λ)·learned_m + λ·Â_m``."""
        lam = self.config["lambda_coeff"]
        out = []
        for (indices, values), orig in zip(self.learned_graphs(), self.orig_graphs, strict=True):
            h = self.item_embedding
            for _ in range(self.config["item_layers"]):
                h = (1 - lam) * propagate_rows(indices, values, h) + lam * spmm(orig, h)
            out.append(h)
        return out

    def fuse(self, views: list[torch.Tensor]) -> torch.Tensor:
        """``h = Σ_m α_m h_m`` with ``α = softmax_m(q(h_m))`` per item."""
        stacked = torch.stack(views, 1)
        alpha = torch.softmax(self.query(stacked), dim=1)
        return (alpha * stacked).sum(1)

    def _outputs(self) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]:
        views = self.modality_embeddings()
        fused = self.fuse(views)
        ego = torch.cat([self.user_embedding, self.item_embedding])
        user_z, item_z = self.split_nodes(lightgcn_propagate(self.adjacency, ego, self.config["ui_layers"]))
        return user_z, item_z + F.normalize(fused, dim=1), views, fused

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        user_z, item_z, _, _ = self._outputs()
        return user_z, item_z

    def contrast_anchors(self, rng: torch.Generator | None) -> torch.Tensor | None:
        """The items whose GRACE terms this batch averages: all (``cl_anchors`` 0, reference), else a fresh
        uniform sample of ``cl_anchors`` items, shared by the modalities (drawn from the trainer's ``rng``)."""
        size = self.config["cl_anchors"]
        if not size or size >= self.n_items:
            return None
        return torch.randperm(self.n_items, generator=rng, device=self.item_embedding.device)[:size]

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        user_z, item_z, views, fused = self._outputs()
        u, p, n = user_z[batch.users], item_z[batch.pos_items], item_z[batch.neg_items]
        rank = bpr_of(u, p, n)
        reg = self.config["reg_weight"] * l2_squared(u, p, n)
        tau, chunk = self.config["tau"], self.config["cl_chunk"]
        anchors = self.contrast_anchors(batch.rng)
        contrast = sum(grace_loss_blockwise(view, fused, tau, chunk, anchors) for view in views)
        cl = self.config["cl_weight"] * contrast
        return {"loss": rank + reg + cl, "bpr": rank, "reg": reg, "cl": cl}
