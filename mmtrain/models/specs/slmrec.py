"""The configuration spec of SLMRec (torch-free; the model is ``mmtrain/models/slmrec.py``)."""

from __future__ import annotations

from mmtrain.models.registry import register_spec
from mmtrain.models.spec import ModelSpec

SSL_TASKS = ("FAC", "FD", "FM", "FD+FM")
"""``ssl_task``: the self-supervised task over the modalities."""


@register_spec
class SLMRecSpec(ModelSpec):
    """Hyperparameters of :class:`mmtrain.models.slmrec.SLMRec`."""

    name = "slmrec"
    summary = "per-modality LightGCN, in-batch InfoNCE, self-supervised modality tasks (Tao et al., TMM 2022)"
    defaults = {
        "embedding_size": 64,
        "ui_layers": 3,
        "rec_tau": 0.2,
        "ssl_task": "FAC",
        "cl_weight": 0.1,
        "tau": 0.2,
        "dropout": 0.3,
        "modalities": "all",
    }
    choices = {"ssl_task": SSL_TASKS}
    renames = {
        "n_layers": "ui_layers",
        "temp": "rec_tau",
        "ssl_alpha": "cl_weight",
        "ssl_temp": "tau",
        "dropout_rate": "dropout",
    }
