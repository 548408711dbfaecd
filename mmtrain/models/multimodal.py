"""The ``modalities`` hyperparameter of multimodal models: ``all`` (every feature matrix the dataset has) or a
comma-separated list of names (each one required)."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from mmtrain.data.loader import TrainData
from mmtrain.models.base import Model, Requirements


def listed(value: str) -> tuple[str, ...]:
    """The explicitly listed modalities (empty for ``all``)."""
    if value.strip() == "all":
        return ()
    return tuple(sorted({m.strip() for m in value.split(",") if m.strip()}))


def modality_requirements(value: str, ui_adjacency: str | None = None) -> Requirements:
    """Listed modalities are required by name; ``all`` requires at least one; plus the U-I normalisation."""
    names = listed(value)
    return Requirements(features=names, any_feature=not names, ui_adjacency=ui_adjacency)


def select(value: str, available: list[str]) -> list[str]:
    """The modalities a model uses, sorted (``available`` when ``all``)."""
    return list(listed(value)) or sorted(available)


def trainable_features(data: TrainData, modalities: list[str]) -> nn.ParameterList:
    """The raw feature matrices as parameters (LATTICE, MICRO, FREEDOM, BM3 fine-tune them, as MMRec does)."""
    return nn.ParameterList([nn.Parameter(data.feature(m).clone()) for m in modalities])


def feature_projections(data: TrainData, modalities: list[str], dim: int, bias: bool = True) -> nn.ModuleList:
    """One ``Linear(d_m -> dim)`` per modality, in ``modalities`` order."""
    return nn.ModuleList([nn.Linear(data.feature(m).shape[1], dim, bias=bias) for m in modalities])


class MultimodalModel(Model):
    """A model over the dataset's feature matrices: ``self.modalities`` are the ones its ``modalities``
    hyperparameter selects (sorted), and it requires them plus the U-I adjacency normalised as ``ui_norm``
    (None: the model builds its own U-I operators)."""

    ui_norm: ClassVar[str | None] = None

    @classmethod
    def requirements(cls, config: dict[str, Any]) -> Requirements:
        return modality_requirements(config["modalities"], cls.ui_norm)

    def __init__(self, data: TrainData, config: dict[str, Any]):
        super().__init__(data, config)
        self.modalities = select(config["modalities"], data.modalities())
