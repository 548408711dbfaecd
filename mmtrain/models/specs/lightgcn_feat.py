"""The configuration spec of LightGCN with content features (torch-free; the model is
``mmtrain/models/lightgcn_feat.py``)."""

from __future__ import annotations

from mmtrain.models.registry import register_spec
from mmtrain.models.spec import REG_STYLES, UI_NORMS, ModelSpec


@register_spec
class LightGCNFeatSpec(ModelSpec):
    """Hyperparameters of :class:`mmtrain.models.lightgcn_feat.LightGCNFeat`."""

    name = "lightgcn_feat"
    summary = "LightGCN over VBPR's item representation [ID ; W·features]: a content baseline for cold start"
    defaults = {
        "embedding_size": 64,
        "ui_layers": 2,
        "reg_weight": 1e-4,
        "reg_style": "emb",
        "adj_norm": "sym",
        "feature_norm": "none",
    }
    choices = {"reg_style": REG_STYLES, "adj_norm": UI_NORMS, "feature_norm": ("none", "l2", "zscore")}
    renames = {"n_layers": "ui_layers"}
