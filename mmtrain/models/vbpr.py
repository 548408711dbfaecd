"""VBPR as in MMRec (He & McAuley, AAAI 2016, simplified: no biases, no separate visual user factor).

Equations, config keys, cost and measured numbers: docs/models/vbpr.md.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmtrain.data.loader import TrainData
from mmtrain.data.sampler import Batch
from mmtrain.models.augment import feature_dropout
from mmtrain.models.base import Model, Requirements, id_embedding
from mmtrain.models.losses import bpr_of, regularizer
from mmtrain.models.registry import register
from mmtrain.models.specs.vbpr import VBPRSpec


def scale_features(x: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-modality feature scaling before concatenation: ``none`` (MMRec: raw), ``l2`` (unit rows) or
    ``zscore`` (zero mean, unit variance per dimension). Raw features with a large shared component (TikTok
    image: mean 2.7, row norm 33) make the visual half of every item nearly the same vector."""
    if norm == "l2":
        return F.normalize(x, dim=1)
    if norm == "zscore":
        return (x - x.mean(0)) / x.std(0).clamp(min=1e-6)
    return x


def concat_features(data: TrainData, norm: str) -> tuple[list[str], torch.Tensor]:
    """The dataset's modalities (sorted by name) and their features, each scaled by ``norm``, concatenated: the
    ``f_i`` of VBPR's item rows."""
    modalities = data.modalities()
    return modalities, torch.cat([scale_features(data.feature(m), norm) for m in modalities], 1)


def content_projection(in_features: int, dim: int) -> nn.Linear:
    """VBPR's ``W``: a linear map of the concatenated features, Xavier-normal weight, zero bias (as MMRec)."""
    linear = nn.Linear(in_features, dim)
    nn.init.xavier_normal_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


@register
class VBPR(VBPRSpec, Model):
    """``f_i`` = every available modality's features concatenated (sorted by name); ``z_i = [γ_i ; W f_i]``,
    ``z_u = θ_u`` (2d); loss ``L_bpr + λ·reg(z_u, z_p, z_n)``; ``dropout`` on both sides while training."""

    @classmethod
    def requirements(cls, config: dict[str, Any]) -> Requirements:
        return Requirements(any_feature=True)

    def __init__(self, data: TrainData, config: dict[str, Any]):
        super().__init__(data, config)
        dim = config["embedding_size"]
        self.modalities, features = concat_features(data, config["feature_norm"])
        self.register_buffer("features", features, persistent=False)
        self.user_embedding = id_embedding(self.n_users, 2 * dim)
        self.item_embedding = id_embedding(self.n_items, dim)
        self.item_linear = content_projection(features.shape[1], dim)
        self.reg = regularizer(config["reg_style"])

    def outputs(self, rng: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_U, z_I)``, dropped out with draws from ``rng`` in training mode."""
        items = torch.cat([self.item_embedding, self.item_linear(self.features)], dim=1)
        p = self.config["dropout"] if self.training else 0.0
        return feature_dropout(self.user_embedding, p, rng), feature_dropout(items, p, rng)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.outputs()

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        user_z, item_z = self.outputs(batch.rng)
        u, p, n = user_z[batch.users], item_z[batch.pos_items], item_z[batch.neg_items]
        rank = bpr_of(u, p, n)
        reg = self.config["reg_weight"] * self.reg(u, p, n)
        return {"loss": rank + reg, "bpr": rank, "reg": reg}
