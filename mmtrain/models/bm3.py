"""BM3 (Zhou et al., WWW 2023): bootstrapped latent contrast of users, items and modalities, no negatives.

Equations (docs/models/bm3.md)::

    [Z_U; Z̄_I] = LGN_{ui_layers}([e_U; e_I]) over D^-1/2 A D^-1/2;   Z_I = Z̄_I + e_I;   F_m = Lin_m(X_m)
    targets (no gradient): Ẑ = dropout_p(Z), F̂_m = dropout_p(F_m);  online: p(·) a shared Linear(d, d)
    L_rec   = (1 − cos(p(Z_u), Ẑ_i)) + (1 − cos(p(Z_i), Ẑ_u))                      (batch means over (u, i))
    L_align = Σ_m (1 − cos(p(F_m)_i, Ẑ_i)) + (1 − cos(p(F_m)_i, F̂_m,i))
    L       = L_rec + reg_weight·EmbLoss(Z_U, Z_I) + cl_weight·L_align             (EmbLoss over all rows)
    score   = p(Z_u)ᵀ p(Z_i)

``p`` is ``dropout``. The batch's negative items are ignored. Memory and measured numbers: docs/models/bm3.md."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmtrain.data.loader import TrainData
from mmtrain.data.sampler import Batch
from mmtrain.graph.propagate import lightgcn_propagate
from mmtrain.models.augment import feature_dropout
from mmtrain.models.base import id_embedding
from mmtrain.models.losses import emb_loss
from mmtrain.models.multimodal import MultimodalModel, feature_projections, trainable_features
from mmtrain.models.registry import register
from mmtrain.models.specs.bm3 import BM3Spec


def cosine_gap(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 − mean_rows cos(online, target)`` with the target detached (the stop-gradient of BM3)."""
    return 1.0 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


@register
class BM3(BM3Spec, MultimodalModel):
    """LightGCN backbone with a shared predictor; self-supervised cosine losses against dropped-out targets."""

    ui_norm = "sym"

    def __init__(self, data: TrainData, config: dict[str, Any]):
        super().__init__(data, config)
        dim = config["embedding_size"]
        self.user_embedding = id_embedding(self.n_users, dim)
        self.item_embedding = id_embedding(self.n_items, dim)
        self.features = trainable_features(data, self.modalities)
        self.projections = feature_projections(data, self.modalities, dim)
        self.predictor = nn.Linear(dim, dim)
        for layer in (*self.projections, self.predictor):
            nn.init.xavier_normal_(layer.weight)
        self.adjacency = data.ui_adjacency("sym")

    def encode(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Online ``(Z_U, Z_I)`` before the predictor."""
        ego = torch.cat([self.user_embedding, self.item_embedding])
        user_z, item_z = self.split_nodes(lightgcn_propagate(self.adjacency, ego, self.config["ui_layers"]))
        return user_z, item_z + self.item_embedding

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Scoring representations ``(p(Z_U), p(Z_I))``."""
        user_z, item_z = self.encode()
        return self.predictor(user_z), self.predictor(item_z)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        user_z, item_z = self.encode()
        modal = [projection(x) for x, projection in zip(self.features, self.projections, strict=True)]
        p = self.config["dropout"] if self.training else 0.0
        rng = batch.rng
        with torch.no_grad():
            user_t, item_t = (
                feature_dropout(user_z.detach(), p, rng),
                feature_dropout(item_z.detach(), p, rng),
            )
            modal_t = [feature_dropout(f.detach(), p, rng) for f in modal]
        users, items = batch.users, batch.pos_items
        item_target = item_t[items]
        rec = cosine_gap(self.predictor(user_z[users]), item_target) + cosine_gap(
            self.predictor(item_z[items]), user_t[users]
        )
        align = torch.zeros((), device=user_z.device)
        for online, target in zip(modal, modal_t, strict=True):
            predicted = self.predictor(online[items])
            align = align + cosine_gap(predicted, item_target) + cosine_gap(predicted, target[items])
        reg = self.config["reg_weight"] * emb_loss(user_z, item_z)
        total = rec + reg + self.config["cl_weight"] * align
        return {"loss": total, "rec": rec, "align": align, "reg": reg}
