"""The configuration spec of BM3 (torch-free; the model is ``mmtrain/models/bm3.py``)."""

from __future__ import annotations

from mmtrain.models.registry import register_spec
from mmtrain.models.spec import ModelSpec


@register_spec
class BM3Spec(ModelSpec):
    """Hyperparameters of :class:`mmtrain.models.bm3.BM3`."""

    name = "bm3"
    summary = "bootstrapped latent contrast, no negatives (Zhou et al., WWW 2023)"
    defaults = {
        "embedding_size": 64,
        "ui_layers": 1,
        "dropout": 0.5,
        "reg_weight": 0.1,
        "cl_weight": 2.0,
        "modalities": "all",
    }
    renames = {"n_layers": "ui_layers"}
