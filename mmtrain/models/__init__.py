"""Recommender models: one module per model, registered by name (see ``base`` and ``registry``)."""

from mmtrain.models.base import Model, Requirements
from mmtrain.models.registry import available, get_model, register

__all__ = ["Model", "Requirements", "available", "get_model", "register"]
