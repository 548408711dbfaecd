"""The ``modalities`` hyperparameter of multimodal models: ``all`` (every feature matrix the dataset has) or a
comma-separated list of names (each one required)."""

from __future__ import annotations

from mmtrain.models.base import Requirements


def listed(value: str) -> tuple[str, ...]:
    """The explicitly listed modalities (empty for ``all``)."""
    if value.strip() == "all":
        return ()
    return tuple(sorted({m.strip() for m in value.split(",") if m.strip()}))


def modality_requirements(value: str) -> Requirements:
    """Listed modalities are required by name; ``all`` requires at least one."""
    names = listed(value)
    return Requirements(features=names) if names else Requirements(any_feature=True)


def select(value: str, available: list[str]) -> list[str]:
    """The modalities a model uses, sorted (``available`` when ``all``)."""
    return list(listed(value)) or sorted(available)
