"""FREEDOM (Zhou & Shen, MM 2023): a frozen multimodal kNN item graph and a degree-pruned user-item graph.

Equations (docs/models/freedom.md; the graphs and the pruning: docs/graphs.md)::

    A   = Σ_m w_m Â_m           Â_m = binary top-k cosine graph of raw features X_m, sym-normalised (≈ 1/k)
    h   = A^{item_layers} e_I    (frozen graph, built once; no learned structure)
    [Z_U; Z̄_I] = LGN_{ui_layers}([e_U; e_I]) over the degree-sensitive pruned graph (train) / full sym graph (eval)
    Z_I = Z̄_I + h
    L   = L_bpr(Z) + reg_weight Σ_m L_bpr(Z_u, Lin_m(X_m)_p, Lin_m(X_m)_n)

Weights: ``image`` gets ``image_weight`` (MMRec ``mm_image_weight`` 0.1) and the other modalities share the rest
equally, so image+text is ``0.1·v + 0.9·t`` as published; one modality alone gets weight 1. ``dropout`` is the
share of training edges pruned at every epoch start. Memory and measured numbers: docs/models/freedom.md."""

from __future__ import annotations

from typing import Any

import torch

from mmtrain.data.loader import TrainData
from mmtrain.data.sampler import Batch
from mmtrain.graph.adjacency import SparseOperator
from mmtrain.graph.combine import weighted_sum
from mmtrain.graph.knn import knn_adjacency
from mmtrain.graph.propagate import lightgcn_propagate, spmm
from mmtrain.graph.prune import prune_edges
from mmtrain.models.base import id_embedding
from mmtrain.models.losses import bpr_of
from mmtrain.models.multimodal import MultimodalModel, feature_projections, trainable_features
from mmtrain.models.registry import register
from mmtrain.models.specs.freedom import FREEDOMSpec


def modality_weights(modalities: list[str], image_weight: float) -> list[float]:
    """``image_weight`` for ``image``, the rest of 1 shared equally by the others (1 for a single modality)."""
    if len(modalities) == 1:
        return [1.0]
    if "image" not in modalities:
        return [1.0 / len(modalities)] * len(modalities)
    other = (1.0 - image_weight) / (len(modalities) - 1)
    return [image_weight if m == "image" else other for m in modalities]


def frozen_item_graph(data: TrainData, modalities: list[str], k: int, image_weight: float) -> SparseOperator:
    """``Σ_m w_m Â_m``: per modality the top-k cosine neighbours (self included), entries 1, sym-normalised."""
    graphs = [knn_adjacency(*data.item_knn(m, k, include_self=True), norm="binary") for m in modalities]
    return weighted_sum(graphs, modality_weights(modalities, image_weight))


@register
class FREEDOM(FREEDOMSpec, MultimodalModel):
    """Frozen kNN item graph added to LightGCN item outputs; training graph re-pruned every epoch."""

    ui_norm = "sym"

    def __init__(self, data: TrainData, config: dict[str, Any]):
        super().__init__(data, config)
        dim = config["embedding_size"]
        self.user_embedding = id_embedding(self.n_users, dim)
        self.item_embedding = id_embedding(self.n_items, dim)
        self.features = trainable_features(data, self.modalities)
        # torch's default Linear init, as MMRec's image_trs / text_trs (BM3, unlike FREEDOM, re-inits them)
        self.projections = feature_projections(data, self.modalities, config["feat_embed_dim"])
        self.item_graph = frozen_item_graph(data, self.modalities, config["knn_k"], config["image_weight"])
        self.full_adjacency = data.ui_adjacency("sym")
        self._train_edges = (data.train.users, data.train.items)
        self.train_adjacency = self.full_adjacency  # until the first epoch prunes it

    def on_epoch_start(self, epoch: int, rng: torch.Generator) -> None:
        """Resample the degree-sensitive pruned training graph with draws from the trainer's ``rng``."""
        users, items = self._train_edges
        self.train_adjacency = prune_edges(
            users, items, self.n_users, self.n_items, self.config["dropout"], rng
        )

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.item_embedding
        for _ in range(self.config["item_layers"]):
            h = spmm(self.item_graph, h)
        adjacency = self.train_adjacency if self.training else self.full_adjacency
        ego = torch.cat([self.user_embedding, self.item_embedding])
        user_z, item_z = self.split_nodes(lightgcn_propagate(adjacency, ego, self.config["ui_layers"]))
        return user_z, item_z + h

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        user_z, item_z = self.forward()
        u = user_z[batch.users]
        rank = bpr_of(u, item_z[batch.pos_items], item_z[batch.neg_items])
        modal = torch.zeros((), device=u.device)
        for feature, projection in zip(self.features, self.projections, strict=True):
            pos, neg = projection(feature[batch.pos_items]), projection(feature[batch.neg_items])
            modal = modal + bpr_of(u, pos, neg)
        reg = self.config["reg_weight"] * modal
        return {"loss": rank + reg, "bpr": rank, "modal_bpr": modal}
