"""The configuration spec of MDMNS (torch-free; the model is ``mmtrain/models/mdmns.py``)."""

from __future__ import annotations

from typing import Any

from mmtrain.config import Range, above, at_least
from mmtrain.errors import TrainError
from mmtrain.models.registry import register_spec
from mmtrain.models.spec import ModelSpec


@register_spec
class MDMNSSpec(ModelSpec):
    """Hyperparameters of :class:`mmtrain.models.mdmns.MDMNS`."""

    name = "mdmns"
    summary = "diffusion-generated modality U-I graphs, multi-level negatives (built on DiffMM)"
    defaults = {
        "embedding_size": 64,
        "ui_layers": 1,
        "reg_weight": 1e-5,
        "cl_weight": 1e-2,
        "tau": 0.5,
        "keepRate": 0.5,
        "ris_lambda": 0.5,
        "ris_adj_lambda": 0.2,
        "trans": 0,
        "cl_method": 0,
        "dims": [1000],
        "time_embedding_size": 10,
        "norm": False,
        "steps": 5,
        "noise_scale": 0.1,
        "noise_min": 1e-4,
        "noise_max": 0.02,
        "sampling_noise": False,
        "sampling_steps": 0,
        "rebuild_k": 1,
        "e_loss": 0.1,
        "diff_every": 0,
        "gen_block": 1024,
        "cl_chunk": 4096,
        "modalities": "all",
    }
    ranges = {
        "keepRate": Range(0, 1, low_open=True),
        "trans": Range(0, 1),
        "cl_method": Range(0, 1),
        "dims": at_least(1),
        "steps": at_least(1),
        "noise_scale": above(0),
        "noise_min": at_least(0),
        "noise_max": at_least(0),
        "sampling_steps": at_least(0),
        "rebuild_k": at_least(1),
        "e_loss": at_least(0),
        "diff_every": at_least(0),
        "gen_block": at_least(1),
        "cl_chunk": at_least(1),
    }
    renames = {
        "latdim": "embedding_size",
        "gnn_layer": "ui_layers",
        "reg": "reg_weight",
        "ssl_reg": "cl_weight",
        "temp": "tau",
        "d_emb_size": "time_embedding_size",
    }

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> None:
        """``dims`` non-empty; ``sampling_steps`` at most ``steps``."""
        if not config["dims"]:
            raise TrainError("dims=[]: expected a non-empty list of positive sizes")
        if config["sampling_steps"] > config["steps"]:
            raise TrainError(f"sampling_steps={config['sampling_steps']}: must be between 0 and steps")
