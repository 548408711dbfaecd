"""The configuration spec of MMSSL (torch-free; the model is ``mmtrain/models/mmssl.py``)."""

from __future__ import annotations

from typing import Any

from mmtrain.config import above, at_least, unit_interval
from mmtrain.errors import TrainError
from mmtrain.models.registry import register_spec
from mmtrain.models.spec import ModelSpec


@register_spec
class MMSSLSpec(ModelSpec):
    """Hyperparameters of :class:`mmtrain.models.mmssl.MMSSL`."""

    name = "mmssl"
    summary = "modality-aware U-I graphs, WGAN-GP discriminator, cross-modal contrast (Wei et al., WWW 2023)"
    defaults = {
        "embedding_size": 64,
        "ui_layers": 2,
        "dropout": 0.2,
        "model_cat_rate": 0.55,
        "id_cat_rate": 0.36,
        "head_num": 4,
        "attention": "paper",
        "reg_weight": 1e-5,
        "feat_reg_decay": 1e-5,
        "cl_weight": 0.03,
        "tau": 0.5,
        "G_rate": 1e-4,
        "D_lr": 3e-4,
        "G_drop1": 0.31,
        "G_drop2": 0.5,
        "D_max_hidden": 0,
        "D_negative_slope": 0.01,
        "gp_rate": 1.0,
        "gp_lambda": 0.3,
        "real_data_tau": 0.005,
        "ui_pre_scale": 100.0,
        "log_log_scale": 1e-5,
        "graph_regen": "none",
        "m_topk_rate": 1e-4,
        "m_topk_min": 1,
        "T": 1,
        "modalities": "all",
    }
    choices = {"attention": ("paper", "reference"), "graph_regen": ("none", "epoch", "reference")}
    ranges = {
        "model_cat_rate": at_least(0),
        "id_cat_rate": at_least(0),
        "head_num": at_least(1),
        "feat_reg_decay": at_least(0),
        "G_rate": at_least(0),
        "D_lr": above(0),
        "G_drop1": unit_interval(high_open=True),
        "G_drop2": unit_interval(high_open=True),
        "D_max_hidden": at_least(0),
        "gp_rate": at_least(0),
        "gp_lambda": at_least(0),
        "real_data_tau": above(0),
        "m_topk_rate": at_least(0),
        "m_topk_min": at_least(1),
        "T": at_least(1),
    }
    renames = {
        "embed_size": "embedding_size",
        "n_ui_layers": "ui_layers",
        "drop_rate": "dropout",
        "cl_rate": "cl_weight",
    }

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> None:
        """``head_num`` must divide ``embedding_size`` (the heads split the embedding)."""
        dim, heads = config["embedding_size"], config["head_num"]
        if dim % heads:
            raise TrainError(f"head_num={heads} must divide embedding_size={dim}")
