"""The configuration spec of MMGCN (torch-free; the model is ``mmtrain/models/mmgcn.py``)."""

from __future__ import annotations

from mmtrain.config import at_least
from mmtrain.models.registry import register_spec
from mmtrain.models.spec import ModelSpec


@register_spec
class MMGCNSpec(ModelSpec):
    """Hyperparameters of :class:`mmtrain.models.mmgcn.MMGCN`."""

    name = "mmgcn"
    summary = "one GCN per modality over the U-I graph, averaged (Wei et al., MM 2019)"
    defaults = {
        "embedding_size": 64,
        "dim_latent": 256,
        "ui_layers": 3,
        "mlp_modalities": "image",
        "train_id_embedding": True,
        "reg_weight": 1e-5,
        "modalities": "all",
    }
    ranges = {"ui_layers": at_least(1), "dim_latent": at_least(1)}
    renames = {"n_layers": "ui_layers"}
