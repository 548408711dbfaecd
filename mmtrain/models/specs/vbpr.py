"""The configuration spec of VBPR (torch-free; the model is ``mmtrain/models/vbpr.py``)."""

from __future__ import annotations

from mmtrain.models.registry import register_spec
from mmtrain.models.spec import FEATURE_NORMS, REG_STYLES, ModelSpec


@register_spec
class VBPRSpec(ModelSpec):
    """Hyperparameters of :class:`mmtrain.models.vbpr.VBPR`."""

    name = "vbpr"
    summary = "ID embedding concatenated with a linear map of the raw features (He & McAuley, AAAI 2016)"
    defaults = {
        "embedding_size": 64,
        "reg_weight": 1e-4,
        "reg_style": "emb",
        "dropout": 0.0,
        "feature_norm": "none",
    }
    choices = {"reg_style": REG_STYLES, "feature_norm": FEATURE_NORMS}
