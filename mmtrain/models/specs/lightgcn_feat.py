"""The configuration spec of LightGCN with content features (torch-free; the model is
``mmtrain/models/lightgcn_feat.py``)."""

from __future__ import annotations

from mmtrain.models.registry import register_spec
from mmtrain.models.spec import FEATURE_NORMS
from mmtrain.models.specs.lightgcn import LightGCNSpec


@register_spec
class LightGCNFeatSpec(LightGCNSpec):
    """Hyperparameters of :class:`mmtrain.models.lightgcn_feat.LightGCNFeat`: LightGCN's, plus VBPR's
    ``feature_norm``."""

    name = "lightgcn_feat"
    summary = "LightGCN over VBPR's item representation [ID ; W·features]: a content baseline for cold start"
    defaults = {**LightGCNSpec.defaults, "feature_norm": "none"}
    choices = {**LightGCNSpec.choices, "feature_norm": FEATURE_NORMS}
