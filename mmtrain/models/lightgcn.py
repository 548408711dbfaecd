"""LightGCN (He et al., SIGIR 2020): layer-mean propagation of ID embeddings over the normalised U-I graph.

Equations, config keys, cost and measured numbers: docs/models/lightgcn.md.
"""

from __future__ import annotations

from typing import Any

import torch

from mmtrain.data.loader import TrainData
from mmtrain.data.sampler import Batch
from mmtrain.graph import lightgcn_propagate
from mmtrain.models.base import Model, Requirements, id_embedding
from mmtrain.models.losses import bpr_of, regularizer
from mmtrain.models.registry import register
from mmtrain.models.specs.lightgcn import LightGCNSpec


@register
class LightGCN(LightGCNSpec, Model):
    """``[Z_U; Z_I] = LGN_L([E_U; E_I])`` over ``Â`` (``adj_norm``, MMRec: sym); loss ``L_bpr + λ·reg(ego)``."""

    @classmethod
    def requirements(cls, config: dict[str, Any]) -> Requirements:
        return Requirements(ui_adjacency=config["adj_norm"])

    def __init__(self, data: TrainData, config: dict[str, Any]):
        super().__init__(data, config)
        dim = config["embedding_size"]
        self.user_embedding = id_embedding(self.n_users, dim)
        self.item_embedding = id_embedding(self.n_items, dim)
        self.adjacency = data.ui_adjacency(config["adj_norm"])
        self.reg = regularizer(config["reg_style"])

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        ego = torch.cat([self.user_embedding, self.item_embedding])
        return self.split_nodes(lightgcn_propagate(self.adjacency, ego, self.config["ui_layers"]))

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        user_z, item_z = self.forward()
        rank = bpr_of(user_z[batch.users], item_z[batch.pos_items], item_z[batch.neg_items])
        ego = (
            self.user_embedding[batch.users],
            self.item_embedding[batch.pos_items],
            self.item_embedding[batch.neg_items],
        )
        reg = self.config["reg_weight"] * self.reg(*ego)
        return {"loss": rank + reg, "bpr": rank, "reg": reg}
