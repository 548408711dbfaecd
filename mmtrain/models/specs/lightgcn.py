"""The configuration spec of LightGCN (torch-free; the model is ``mmtrain/models/lightgcn.py``)."""

from __future__ import annotations

from mmtrain.models.registry import register_spec
from mmtrain.models.spec import REG_STYLES, UI_NORMS, ModelSpec


@register_spec
class LightGCNSpec(ModelSpec):
    """Hyperparameters of :class:`mmtrain.models.lightgcn.LightGCN`."""

    name = "lightgcn"
    summary = "layer mean of ID embeddings over the normalised U-I graph (He et al., SIGIR 2020)"
    defaults = {
        "embedding_size": 64,
        "ui_layers": 2,
        "reg_weight": 1e-4,
        "reg_style": "emb",
        "adj_norm": "sym",
    }
    choices = {"reg_style": REG_STYLES, "adj_norm": UI_NORMS}
    renames = {"n_layers": "ui_layers"}
