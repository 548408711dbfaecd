"""MF-BPR: dot product of free user and item embeddings, trained with BPR (Rendle et al., UAI 2009).

Equations, config keys and measured numbers: docs/models/mf.md.
"""

from __future__ import annotations

from typing import Any

import torch

from mmtrain.data.loader import TrainData
from mmtrain.data.sampler import Batch
from mmtrain.models.base import Model, id_embedding
from mmtrain.models.losses import bpr_of, regularizer
from mmtrain.models.registry import register
from mmtrain.models.specs.mf import MFSpec


@register
class MF(MFSpec, Model):
    """``ŷ_ui = e_uᵀ e_i``; loss ``L_bpr + reg_weight · reg(e_u, e_p, e_n)`` (MMRec ``BPR`` model)."""

    def __init__(self, data: TrainData, config: dict[str, Any]):
        super().__init__(data, config)
        dim = config["embedding_size"]
        self.user_embedding = id_embedding(self.n_users, dim)
        self.item_embedding = id_embedding(self.n_items, dim)
        self.reg = regularizer(config["reg_style"])

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_embedding, self.item_embedding

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        u = self.user_embedding[batch.users]
        p = self.item_embedding[batch.pos_items]
        n = self.item_embedding[batch.neg_items]
        rank = bpr_of(u, p, n)
        reg = self.config["reg_weight"] * self.reg(u, p, n)
        return {"loss": rank + reg, "bpr": rank, "reg": reg}

    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_embedding[users] @ self.item_embedding.T
