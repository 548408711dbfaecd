"""Recommender models: one spec module and one model module per model, registered by name (see ``spec``,
``base`` and ``registry``).

Importing this package does not import torch: ``Model`` and ``Requirements`` (from ``base``) load on first
access, so the torch-free commands can use the registry's specs.
"""

from typing import Any

from mmtrain.models.registry import available, get_model, get_spec, register, register_spec
from mmtrain.models.spec import ModelSpec

__all__ = [
    "Model",
    "ModelSpec",
    "Requirements",
    "available",
    "get_model",
    "get_spec",
    "register",
    "register_spec",
]


def __getattr__(name: str) -> Any:
    """``Model`` and ``Requirements`` imported (with torch) only when used."""
    if name in ("Model", "Requirements"):
        from mmtrain.models import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
