"""The configuration spec of FREEDOM (torch-free; the model is ``mmtrain/models/freedom.py``)."""

from __future__ import annotations

from mmtrain.config import at_least, unit_interval
from mmtrain.models.registry import register_spec
from mmtrain.models.spec import ModelSpec


@register_spec
class FREEDOMSpec(ModelSpec):
    """Hyperparameters of :class:`mmtrain.models.freedom.FREEDOM`."""

    name = "freedom"
    summary = "frozen kNN item graph + degree-pruned U-I graph (Zhou & Shen, MM 2023)"
    defaults = {
        "embedding_size": 64,
        "feat_embed_dim": 64,
        "ui_layers": 2,
        "item_layers": 1,
        "knn_k": 10,
        "image_weight": 0.1,
        "dropout": 0.8,
        "reg_weight": 0.0,
        "modalities": "all",
    }
    ranges = {"feat_embed_dim": at_least(1), "image_weight": unit_interval()}
    renames = {"n_layers": "ui_layers", "n_mm_layers": "item_layers"}
