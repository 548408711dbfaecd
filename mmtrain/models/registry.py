"""Model registry: ``@register`` a :class:`~mmtrain.models.base.Model` subclass in its own module.

Every module of the ``mmtrain.models`` package is imported on first lookup, so adding a model is adding one
file (plus ``recipes/models/<name>.yaml``); nothing else needs editing.
"""

from __future__ import annotations

import importlib
import pkgutil

from mmtrain.errors import TrainError
from mmtrain.models.base import Model

_MODELS: dict[str, type[Model]] = {}
_INFRA = {"base", "registry"}


def register(cls: type[Model]) -> type[Model]:
    """Class decorator adding a model under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if _MODELS.get(cls.name, cls) is not cls:
        raise ValueError(f"model name {cls.name!r} is registered twice")
    _MODELS[cls.name] = cls
    return cls


def _discover() -> None:
    import mmtrain.models as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in _INFRA and not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")


def available() -> list[str]:
    """Registered model names, sorted."""
    _discover()
    return sorted(_MODELS)


def get_model(name: str) -> type[Model]:
    """The model class registered as ``name``; a user error when there is none."""
    _discover()
    if name not in _MODELS:
        raise TrainError(f"unknown model {name!r} (available: {', '.join(sorted(_MODELS))})")
    return _MODELS[name]
