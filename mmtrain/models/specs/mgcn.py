"""The configuration spec of MGCN (torch-free; the model is ``mmtrain/models/mgcn.py``)."""

from __future__ import annotations

from mmtrain.models.registry import register_spec
from mmtrain.models.spec import ModelSpec


@register_spec
class MGCNSpec(ModelSpec):
    """Hyperparameters of :class:`mmtrain.models.mgcn.MGCN`."""

    name = "mgcn"
    summary = "purified modality views, attention fusion, preference gates, InfoNCE (Yu et al., MM 2023)"
    defaults = {
        "embedding_size": 64,
        "ui_layers": 2,
        "item_layers": 1,
        "knn_k": 10,
        "reg_weight": 1e-4,
        "cl_weight": 0.01,
        "modalities": "all",
    }
    renames = {"n_layers": "item_layers", "n_ui_layers": "ui_layers", "cl_loss": "cl_weight"}
