"""The configuration spec of MF (torch-free; the model is ``mmtrain/models/mf.py``)."""

from __future__ import annotations

from mmtrain.models.registry import register_spec
from mmtrain.models.spec import REG_STYLES, ModelSpec


@register_spec
class MFSpec(ModelSpec):
    """Hyperparameters of :class:`mmtrain.models.mf.MF`."""

    name = "mf"
    summary = "MF-BPR: dot product of free ID embeddings (Rendle et al., UAI 2009)"
    defaults = {"embedding_size": 64, "reg_weight": 1e-5, "reg_style": "emb"}
    choices = {"reg_style": REG_STYLES}
