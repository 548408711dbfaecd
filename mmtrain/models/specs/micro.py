"""The configuration spec of MICRO (torch-free; the model is ``mmtrain/models/micro.py``)."""

from __future__ import annotations

from mmtrain.config import at_least, unit_interval
from mmtrain.models.registry import register_spec
from mmtrain.models.spec import ModelSpec


@register_spec
class MICROSpec(ModelSpec):
    """Hyperparameters of :class:`mmtrain.models.micro.MICRO`."""

    name = "micro"
    summary = "per-modality learned item graphs, attention fusion, contrastive loss (Zhang et al., TKDE 2022)"
    defaults = {
        "embedding_size": 64,
        "feat_embed_dim": 64,
        "item_layers": 1,
        "ui_layers": 2,
        "knn_k": 10,
        "lambda_coeff": 0.9,
        "reg_weight": 1e-5,
        "cl_weight": 0.03,
        "tau": 0.5,
        "cl_chunk": 512,
        "cl_anchors": 0,
        "knn_block": 0,
        "modalities": "all",
    }
    ranges = {
        "feat_embed_dim": at_least(1),
        "lambda_coeff": unit_interval(),
        "knn_block": at_least(0),
        "cl_chunk": at_least(1),
        "cl_anchors": at_least(0),
    }
    renames = {"n_layers": "item_layers", "n_ui_layers": "ui_layers"}
