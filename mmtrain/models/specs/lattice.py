"""The configuration spec of LATTICE (torch-free; the model is ``mmtrain/models/lattice.py``)."""

from __future__ import annotations

from mmtrain.config import at_least, unit_interval
from mmtrain.models.registry import register_spec
from mmtrain.models.spec import ModelSpec


@register_spec
class LATTICESpec(ModelSpec):
    """Hyperparameters of :class:`mmtrain.models.lattice.LATTICE`."""

    name = "lattice"
    summary = "learned item-item graph + kNN skip, added to LightGCN (Zhang et al., MM 2021)"
    defaults = {
        "embedding_size": 64,
        "feat_embed_dim": 64,
        "item_layers": 1,
        "ui_layers": 2,
        "knn_k": 10,
        "lambda_coeff": 0.9,
        "reg_weight": 1e-5,
        "knn_block": 0,
        "modalities": "all",
    }
    ranges = {
        "feat_embed_dim": at_least(1),
        "lambda_coeff": unit_interval(),
        "knn_block": at_least(0),
    }
    renames = {"n_layers": "item_layers", "n_ui_layers": "ui_layers"}
