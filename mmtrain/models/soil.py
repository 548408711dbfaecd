"""SOIL (Su et al., MM 2024): MGCN with second-order interest, i.e. a U-I graph augmented by multimodally
attractive unrecorded items, interest-aware item graphs, and a second (user-item) contrastive loss.

Forward = :class:`~mmtrain.models.mgcn.MGCN` with these changes (docs/models/soil.md; the graphs are built by
:mod:`mmtrain.graph.interest`, docs/graphs.md "SOIL interest graphs")::

    U-I operator    Â_aug = Â + c·Â₂,   user side R̃_aug = R̃ + c·R̃₂     (Â₂: second-order edges, sym-normalised)
    item graphs     G_m = symnorm(interest_m) + symnorm(kNN_k(S_m))      (frozen)
    gates           Ẽ_m = e_I ⊙ σ(W_m Lin_m(X_m) + b_m)   (raw features frozen; no user-preference gates)
    side            paper: Σ_m (1 − α_m) M_m        code: (Σ_m M_m − common) / (n_mods + 1)
    L = L_bpr(Z) + cl_weight·[InfoNCE(side_I[p], C_I[p]) + InfoNCE(side_U[u], C_U[u])]
                 + cl_weight2·[InfoNCE(Z_u, C_I[p]) + InfoNCE(Z_u, side_I[p])]          (τ = 0.2, no L2 term)

``variant`` chooses between the paper (default) and the public code (``MrShouxingMa/SOIL``), which differ in
``c`` (paper 1, code ½), the second-order edges, the interest graph (assigned vs accumulated) and the side
combination; docs/models/soil.md lists the differences, our assumptions where the paper's formulas were not
available, the original's ``R₂`` indexing bug (not followed), the memory cost and measured numbers. Any number
of modalities works ("visual x textual" is the product over the modalities used); with a single modality
α ≡ 1, so both side formulas would vanish, and ``side = M_1`` (no fusion).

Interest graphs normalise signed cosines; a row whose sum is not positive gets weight 0 here, where the original
takes ``degree^-1/2`` of a negative sum and gets NaN: on TikTok (audio in its text slot) that makes the
original's loss NaN from the first batch (docs/models/soil.md, "Parity with the original code")."""

from __future__ import annotations

import torch

from mmtrain.data.loader import TrainData
from mmtrain.data.sampler import Batch
from mmtrain.graph.adjacency import SparseOperator, bipartite_block
from mmtrain.graph.combine import weighted_sum
from mmtrain.graph.interest import (
    interest_columns,
    interest_graph,
    interest_pairs,
    second_order_edges,
    second_order_operators,
    unit_rows,
)
from mmtrain.graph.knn import knn_adjacency
from mmtrain.models.losses import bpr_of, info_nce
from mmtrain.models.mgcn import MGCN, TEMPERATURE
from mmtrain.models.registry import register
from mmtrain.models.specs.soil import SOILSpec


@register
class SOIL(SOILSpec, MGCN):
    """MGCN over a second-order augmented U-I graph and interest-aware item graphs, two contrastive losses."""

    train_features = False
    preference_gates = False

    def _units(self, data: TrainData) -> list[torch.Tensor]:
        return [unit_rows(data.feature(m)) for m in self.modalities]

    def ui_operators(self, data: TrainData) -> tuple[SparseOperator, SparseOperator]:
        """``Â + c·Â₂`` and ``R̃ + c·R̃₂`` (c = 1 paper, ½ code)."""
        cfg = self.config
        adjacency = data.ui_adjacency("sym")
        user_item = bipartite_block(adjacency, self.n_users)
        block = cfg["graph_block"] or None
        train = data.train
        edges = second_order_edges(
            train.users,
            train.items,
            self.n_users,
            self.n_items,
            self._units(data),
            cfg["knn_a"],
            cfg["variant"],
            block,
        )
        second, second_user_item = second_order_operators(*edges, self.n_users, self.n_items)
        weight = 1.0 if cfg["variant"] == "paper" else 0.5
        return (
            weighted_sum([adjacency, second], [1.0, weight]),
            weighted_sum([user_item, second_user_item], [1.0, weight]),
        )

    def item_graphs_of(self, data: TrainData) -> list[SparseOperator]:
        """``G_m = symnorm(interest_m) + symnorm(kNN_k(S_m))`` per modality."""
        cfg = self.config
        block = cfg["graph_block"] or None
        units = self._units(data)
        train = data.train
        columns = interest_columns(
            train.users, train.items, self.n_users, self.n_items, units, cfg["knn_i"], block
        )
        rows, cols, counts = interest_pairs(train.users, train.items, self.n_items, columns)
        accumulate = cfg["variant"] == "code"
        graphs = []
        for modality, unit in zip(self.modalities, units, strict=True):
            interest = interest_graph(rows, cols, counts, unit, accumulate, block)
            knn = knn_adjacency(*data.item_knn(modality, cfg["knn_k"], include_self=True), norm="sym")
            graphs.append(weighted_sum([interest, knn], [1.0, 1.0]))
        return graphs

    def combine(
        self, views: list[torch.Tensor], alpha: torch.Tensor, common: torch.Tensor, content: torch.Tensor
    ) -> torch.Tensor:
        """Paper ``Σ_m (1 − α_m) M_m``; code ``(Σ_m M_m − common) / (n_mods + 1)``; one modality: ``M_1``."""
        if len(views) == 1:
            return views[0]
        if self.config["variant"] == "paper":
            return sum((1 - alpha[:, m : m + 1]) * view for m, view in enumerate(views))
        return (sum(views) - common) / (len(views) + 1)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        z, side, content = self.outputs()
        u = z[batch.users]
        pos = batch.pos_items + self.n_users
        rank = bpr_of(u, z[pos], z[batch.neg_items + self.n_users])
        item_item = self.config["cl_weight"] * self.side_content_contrast(side, content, batch)
        user_item = info_nce(u, content[pos], TEMPERATURE) + info_nce(u, side[pos], TEMPERATURE)
        user_item = self.config["cl_weight2"] * user_item
        return {"loss": rank + item_item + user_item, "bpr": rank, "cl_ii": item_item, "cl_ui": user_item}
