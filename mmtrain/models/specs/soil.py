"""The configuration spec of SOIL (torch-free; the model is ``mmtrain/models/soil.py``)."""

from __future__ import annotations

from mmtrain.config import at_least
from mmtrain.models.registry import register_spec
from mmtrain.models.specs.mgcn import MGCNSpec

VARIANTS = ("paper", "code")
"""``variant``: the paper's formulas or the public code's (``mmtrain.graph.interest.VARIANTS``)."""


@register_spec
class SOILSpec(MGCNSpec):
    """Hyperparameters of :class:`mmtrain.models.soil.SOIL`."""

    name = "soil"
    summary = "MGCN with second-order interest edges and interest item graphs (Su et al., MM 2024)"
    defaults = {
        "embedding_size": 64,
        "ui_layers": 2,
        "item_layers": 1,
        "knn_k": 10,
        "knn_i": 10,
        "knn_a": 2,
        "cl_weight": 0.01,
        "cl_weight2": 0.01,
        "variant": "paper",
        "graph_block": 0,
        "modalities": "all",
    }
    choices = {"variant": VARIANTS}
    ranges = {"knn_i": at_least(1), "knn_a": at_least(0), "graph_block": at_least(0)}
    renames = {**MGCNSpec.renames, "cl_loss2": "cl_weight2"}
