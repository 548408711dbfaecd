"""LightGCN with content features: LightGCN's layer mean over the U-I graph, started from VBPR's item
representation ``[e_i ; W f_i]`` instead of a free ID embedding alone.

The content baseline of item cold start: an item with no training interaction keeps an untrained ID half, but
its feature half ``W f_i`` is learned from the warm items, so it can be ranked from its features, which LightGCN
cannot do. Equations, config keys and measured numbers: docs/models/lightgcn_feat.md.
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
from mmtrain.models.specs.lightgcn_feat import LightGCNFeatSpec
from mmtrain.models.vbpr import concat_features, content_projection


@register
class LightGCNFeat(LightGCNFeatSpec, Model):
    """``f_i`` = every modality's features concatenated (sorted by name); ego rows ``x_u = θ_u`` (2d) and
    ``x_i = [e_i ; W f_i]`` (d + d); ``[Z_U; Z_I] = LGN_L([X_U; X_I])`` over ``Â`` (``adj_norm``); loss
    ``L_bpr + λ·reg(ego rows of the batch)``."""

    @classmethod
    def requirements(cls, config: dict[str, Any]) -> Requirements:
        return Requirements(ui_adjacency=config["adj_norm"], any_feature=True)

    def __init__(self, data: TrainData, config: dict[str, Any]):
        super().__init__(data, config)
        dim = config["embedding_size"]
        self.modalities, features = concat_features(data, config["feature_norm"])
        self.register_buffer("features", features, persistent=False)
        self.user_embedding = id_embedding(self.n_users, 2 * dim)
        self.item_embedding = id_embedding(self.n_items, dim)
        self.item_linear = content_projection(features.shape[1], dim)
        self.adjacency = data.ui_adjacency(config["adj_norm"])
        self.reg = regularizer(config["reg_style"])

    def ego(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer-0 rows: ``(θ_U, [e_I ; W f_I])``."""
        return self.user_embedding, torch.cat([self.item_embedding, self.item_linear(self.features)], dim=1)

    def propagate(self, user_x: torch.Tensor, item_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Z_U, Z_I) = LGN_L([X_U; X_I])``."""
        return self.split_nodes(
            lightgcn_propagate(self.adjacency, torch.cat([user_x, item_x]), self.config["ui_layers"])
        )

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.propagate(*self.ego())

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        user_x, item_x = self.ego()
        user_z, item_z = self.propagate(user_x, item_x)
        rank = bpr_of(user_z[batch.users], item_z[batch.pos_items], item_z[batch.neg_items])
        ego = (user_x[batch.users], item_x[batch.pos_items], item_x[batch.neg_items])
        reg = self.config["reg_weight"] * self.reg(*ego)
        return {"loss": rank + reg, "bpr": rank, "reg": reg}
