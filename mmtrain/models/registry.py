"""Model registry: torch-free specs by name, and the torch model classes loaded only when asked for.

A model is two halves with one name:

- its **spec** (:class:`~mmtrain.models.spec.ModelSpec` subclass, ``@register_spec``) in
  ``mmtrain/models/specs/<module>.py``: name, summary, hyperparameters, choices, ranges, renames, cross-key
  checks. Spec modules import no torch, so listing models (``mmtrain models``) and resolving and checking a
  config (``--set`` errors, unknown keys, a missing recipe) take a fraction of a second;
- its **model class** (``@register``, a subclass of both its spec and :class:`~mmtrain.models.base.Model`) in
  ``mmtrain/models/<module>.py``, the same module name. :func:`get_model` imports it on first use.

Every module of ``mmtrain.models.specs`` is imported on first lookup, so adding a model is adding its spec
module, its model module and ``recipes/models/<name>.yaml``; no list needs editing. Why a separate spec module
rather than reading the model file's class attributes without executing it (an AST read) or moving the spec
into the recipe YAML: the spec stays ordinary Python (ranges, inherited renames, ``check_config`` code, typed
defaults such as ``1e-4``), is checked by the interpreter, and needs no file outside the package; the model
class inherits it, so ``Model.defaults`` and the spec can never disagree.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from mmtrain.errors import TrainError
from mmtrain.models.spec import ModelSpec

if TYPE_CHECKING:
    from mmtrain.models.base import Model

SPEC_PACKAGE = "mmtrain.models.specs"
MODEL_PACKAGE = "mmtrain.models"

_SPECS: dict[str, type[ModelSpec]] = {}
_MODELS: dict[str, type[Model]] = {}


def register_spec(cls: type[ModelSpec]) -> type[ModelSpec]:
    """Class decorator adding a model's spec under ``cls.name`` (in ``mmtrain/models/specs/<module>.py``)."""
    if not cls.name or "name" not in vars(cls):
        raise ValueError(f"{cls.__qualname__} declares no name")
    if not cls.__module__.startswith(f"{SPEC_PACKAGE}."):
        raise ValueError(f"spec {cls.__qualname__} must live in {SPEC_PACKAGE}, not {cls.__module__}")
    if _SPECS.get(cls.name, cls) is not cls:
        raise ValueError(f"model name {cls.name!r} is registered twice")
    _SPECS[cls.name] = cls
    return cls


def register(cls: type[Model]) -> type[Model]:
    """Class decorator adding a model class; it must subclass the spec registered under its name."""
    spec = _SPECS.get(cls.name)
    if spec is None or not issubclass(cls, spec):
        raise ValueError(f"model {cls.__qualname__} must subclass the registered spec of {cls.name!r}")
    if _MODELS.get(cls.name, cls) is not cls:
        raise ValueError(f"model name {cls.name!r} is registered twice")
    _MODELS[cls.name] = cls
    return cls


def _discover() -> None:
    package = importlib.import_module(SPEC_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{SPEC_PACKAGE}.{info.name}")


def available() -> list[str]:
    """Registered model names, sorted (no torch import)."""
    _discover()
    return sorted(_SPECS)


def get_spec(name: str) -> type[ModelSpec]:
    """The spec registered as ``name`` (no torch import); a user error when there is none."""
    _discover()
    if name not in _SPECS:
        raise TrainError(f"unknown model {name!r} (available: {', '.join(sorted(_SPECS))})")
    return _SPECS[name]


def get_model(name: str) -> type[Model]:
    """The model class registered as ``name``, importing its module (and torch); a user error when unknown."""
    spec = get_spec(name)
    if name not in _MODELS:
        module = f"{MODEL_PACKAGE}.{spec.__module__.rpartition('.')[2]}"
        importlib.import_module(module)
        if name not in _MODELS:
            raise RuntimeError(f"{module} registers no model class for the spec {name!r}")
    return _MODELS[name]
