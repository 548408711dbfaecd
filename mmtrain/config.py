"""Run configuration: built-in defaults < model recipe YAML < ``--set key=value`` overrides.

A configuration is one flat dict. Its keys are the trainer/evaluator keys below plus the hyperparameters the
model's spec declares in ``ModelSpec.defaults`` (``mmtrain/models/specs/``, read without importing torch, so a
bad config fails in well under a second); any other key is a user error (a key a model renamed says so, a typo
gets a "did you mean"). Values are coerced to the type of the default (YAML 1.1 reads ``1e-4`` as a
string; here it becomes the float 1e-4) and checked against the key's :class:`Range` when the config is
resolved, before any data is loaded or a run directory is made.

The shared hyperparameter vocabulary (:data:`VOCABULARY_RANGES`): ``embedding_size`` (ID embedding size),
``ui_layers`` (user-item graph depth), ``item_layers`` (item-item graph depth), ``dropout``, ``cl_weight``
(weight of a contrastive / self-supervised loss; ``cl_weight2`` a second one), ``tau`` (contrastive
temperature), ``reg_weight`` (regularisation weight).
"""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mmtrain.errors import TrainError

if TYPE_CHECKING:
    from mmtrain.models.spec import ModelSpec

TRAINER_DEFAULTS: dict[str, Any] = {
    "split": "warm",  # warm (splits/) or cold (cold/)
    "device": "auto",  # auto, cpu, cuda, cuda:N
    "seed": 999,  # MMRec's default seed
    "threads": 0,  # torch intra-op threads on CPU; 0 keeps torch's default
    "epochs": 1000,
    "max_minutes": 0.0,  # wall-clock budget for training + validation; 0 = none (the last epoch is evaluated)
    "batch_size": 2048,
    "lr": 1e-3,
    "optimizer": "adam",  # adam or adamw (decoupled weight decay, MMSSL)
    "weight_decay": 0.0,
    "lr_decay": 1.0,  # MMRec scheduler: lr * lr_decay ** (epoch / lr_decay_step)
    "lr_decay_step": 50,
    "neg_items": "train",  # negatives drawn from the items seen in train (MMRec) or from all items
    "sampler": "pairs",  # every training pair once per epoch (MMRec) or uniform users per batch (LATTICE family)
    "eval_every": 1,  # evaluate on val every this many epochs
    "patience": 20,  # stop after more than this many evaluations without a strict improvement (MMRec)
    "valid_metric": "recall@20",
    "topk": [10, 20, 50],
    "eval_batch_size": 4096,
    "mask_val_at_test": True,
    "legacy_ndcg": "none",  # "lattice" adds ndcg_lattice@K (IDCG from the hits of the top-max(K) list)
    "cold_candidates": "all",  # cold split: rank among all items, or among the cold items of that role
    "amp": False,  # autocast (bfloat16 on CPU, float16 on CUDA) for the training step
    "compile": False,  # torch.compile the training loss
    "deterministic": True,  # torch.use_deterministic_algorithms (warn only where unsupported)
    "tensorboard": True,
}

CHOICES: dict[str, tuple[str, ...]] = {
    "split": ("warm", "cold"),
    "optimizer": ("adam", "adamw"),
    "neg_items": ("train", "all"),
    "sampler": ("pairs", "users"),
    "legacy_ndcg": ("none", "lattice"),
    "cold_candidates": ("all", "cold"),
}

RECIPE_KEYS = ("model", "source", "notes", "params", "grid")


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric key (each element of a list): finite, ``>= low`` (``> low`` when
    ``low_open``) and ``<= high`` (``< high`` when ``high_open``); None leaves that side unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        """``>= 1``, ``> 0``, ``in [0, 1)``, ..."""
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return "finite"

    def contains(self, value: float) -> bool:
        """Whether ``value`` is finite and inside the bounds (NaN and infinities never are)."""
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def check(self, key: str, value: Any) -> None:
        """Raise a one-line TrainError when ``value`` (or an element of a list) is outside the range."""
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, (int, float)) and not isinstance(item, bool) and not self.contains(item):
                raise TrainError(f"{key}={value!r}: must be {self.describe()}")


def at_least(low: float) -> Range:
    """``[low, ∞)``."""
    return Range(low)


def above(low: float) -> Range:
    """``(low, ∞)``."""
    return Range(low, low_open=True)


def unit_interval(high_open: bool = False) -> Range:
    """``[0, 1]`` or ``[0, 1)``."""
    return Range(0, 1, high_open=high_open)


TRAINER_RANGES: dict[str, Range] = {
    "threads": at_least(0),
    "epochs": at_least(1),
    "max_minutes": at_least(0),
    "batch_size": at_least(1),
    "lr": above(0),
    "weight_decay": at_least(0),
    "lr_decay": above(0),
    "lr_decay_step": above(0),
    "eval_every": at_least(1),
    "patience": at_least(0),
    "topk": at_least(1),
    "eval_batch_size": at_least(1),
}

VOCABULARY_RANGES: dict[str, Range] = {
    "embedding_size": at_least(1),
    "ui_layers": at_least(0),
    "item_layers": at_least(0),
    "dropout": unit_interval(high_open=True),
    "cl_weight": at_least(0),
    "cl_weight2": at_least(0),
    "tau": above(0),
    "rec_tau": above(0),
    "reg_weight": at_least(0),
    "knn_k": at_least(1),
    "time_embedding_size": at_least(1),
}


def recipe_dirs() -> list[Path]:
    """Where model recipes are looked up: the source tree, then the installed share directory."""
    return [
        Path(__file__).resolve().parents[1] / "recipes" / "models",
        Path(sys.prefix) / "share" / "modalrec" / "recipes" / "models",
    ]


def find_recipe(model: str) -> Path | None:
    """The default recipe ``recipes/models/<model>.yaml`` of a model, or None."""
    for d in recipe_dirs():
        if (d / f"{model}.yaml").is_file():
            return d / f"{model}.yaml"
    return None


def is_run_config(doc: Mapping[str, Any]) -> bool:
    """Whether a parsed YAML mapping is a run's own ``config.yaml`` (one flat resolved mapping with ``model``
    and trainer keys) rather than a recipe (``model``/``source``/``notes``/``params``/``grid``)."""
    return "model" in doc and bool(set(doc) & set(TRAINER_DEFAULTS)) and not set(doc) & {"params", "grid"}


def read_recipe(path: Path) -> dict[str, Any]:
    """Parse a model recipe: ``model``, ``params`` (values), ``grid`` (lists to search), ``source``, ``notes``.

    A run directory's ``config.yaml`` is accepted too (:func:`is_run_config`): its keys become the recipe's
    ``params``, so ``--config RUN_DIR/config.yaml`` re-runs that run."""
    path = Path(path)
    if not path.is_file():
        raise TrainError("recipe not found", path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise TrainError(
            f"invalid YAML ({getattr(e, 'problem', e)})", path, mark.line + 1 if mark else None
        ) from None
    if not isinstance(doc, dict):
        raise TrainError("a recipe must be a mapping", path)
    if is_run_config(doc):
        return {"model": doc["model"], "params": {k: v for k, v in doc.items() if k != "model"}}
    unknown = sorted(set(doc) - set(RECIPE_KEYS))
    if unknown:
        raise TrainError(f"unknown recipe keys {unknown} (allowed: {', '.join(RECIPE_KEYS)})", path)
    for key in ("params", "grid"):
        if not isinstance(doc.get(key) or {}, dict):
            raise TrainError(f"'{key}' must be a mapping", path)
    return doc


def parse_set(item: str) -> tuple[str, Any]:
    """``key=value`` with a YAML value (``lr=1e-3``, ``topk=[10,20]``, ``amp=true``)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise TrainError(f"bad --set {item!r}: expected key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def coerce(key: str, value: Any, default: Any) -> Any:
    """Convert ``value`` to the type of ``default``; raise TrainError when it cannot be."""

    def bad() -> TrainError:
        return TrainError(f"{key}={value!r}: expected {type(default).__name__}")

    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise bad()
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad()
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad() from None
        raise bad()
    if isinstance(default, str):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad()
    if isinstance(default, list):
        items = value if isinstance(value, list) else [value]
        inner = default[0] if default else None
        return [coerce(key, v, inner) for v in items]
    return value


def check_value(key: str, value: Any, choices: dict[str, tuple[str, ...]]) -> None:
    if key in choices and value not in choices[key]:
        raise TrainError(f"{key}={value!r}: choose from {', '.join(choices[key])}")


def unknown_key(
    origin: str, key: str, model: str, known: list[str], renames: Mapping[str, str]
) -> TrainError:
    """The one-line error of a key the model does not have: renamed (with the new name) or a likely typo."""
    if key in renames:
        return TrainError(f"{origin}: unknown key {key!r} for {model}: renamed to {renames[key]!r}")
    near = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return TrainError(f"{origin}: unknown key {key!r} for {model}{hint}")


def check_keys(
    origin: str, keys: list[str] | Mapping[str, Any], model: type[ModelSpec], known: list[str] | None = None
) -> None:
    """Raise :func:`unknown_key` for the first of ``keys`` that is neither a trainer key nor the model's."""
    known = known if known is not None else [*TRAINER_DEFAULTS, *model.defaults]
    for key in keys:
        if key not in known and key != "model":
            raise unknown_key(origin, key, model.name, known, model.renames)


def model_ranges(model: type[ModelSpec]) -> dict[str, Range]:
    """The ranges of a model's keys: the shared vocabulary's (for the keys it has), then its own."""
    shared = {k: r for k, r in VOCABULARY_RANGES.items() if k in model.defaults}
    return {**shared, **model.ranges}


def resolve_config(
    model: type[ModelSpec],
    recipe: dict[str, Any] | None = None,
    sets: list[tuple[str, Any]] | tuple = (),
) -> dict[str, Any]:
    """Merge defaults, the recipe's ``params`` and the overrides into one validated flat dict.

    Every key of the recipe (``params`` and ``grid``) and of the overrides must exist; every value is coerced,
    checked against its choices and range, and then the model's cross-key checks run."""
    defaults = {**TRAINER_DEFAULTS, **model.defaults}
    choices = {**CHOICES, **model.choices}
    if recipe and recipe.get("model") not in (None, model.name):
        raise TrainError(f"recipe is for model {recipe['model']!r}, not {model.name!r}")
    known = list(defaults)
    check_keys("recipe grid", list((recipe or {}).get("grid") or {}), model, known)
    config: dict[str, Any] = {"model": model.name, **defaults}
    layers = [("recipe", (recipe or {}).get("params") or {}), ("--set", dict(sets))]
    for origin, values in layers:
        check_keys(origin, list(values), model, known)
        for key, value in values.items():
            config[key] = coerce(key, value, defaults[key])
            check_value(key, config[key], choices)
    validate(config, model_ranges(model))
    model.check_config(config)
    return config


def make_config(
    model: str, recipe_path: Path | None = None, sets: list[tuple[str, Any]] | tuple = ()
) -> dict[str, Any]:
    """Resolve a model's config: defaults < recipe (``recipe_path``, else ``recipes/models/<model>.yaml``) <
    ``sets``. Reads only the model's spec: no torch import."""
    from mmtrain.models.registry import get_spec

    spec = get_spec(model)
    path = recipe_path or find_recipe(model)
    recipe = read_recipe(path) if path else None
    return resolve_config(spec, recipe, sets)


def validate(config: dict[str, Any], ranges: Mapping[str, Range] | None = None) -> None:
    """Range checks of the trainer keys (and of ``ranges``, a model's), then cross-key checks."""
    for key, allowed in {**TRAINER_RANGES, **(ranges or {})}.items():
        if key in config:
            allowed.check(key, config[key])
    if not config["topk"]:
        raise TrainError(f"topk={config['topk']}: must be a non-empty list of positive ints")
    metric, _, k = config["valid_metric"].partition("@")
    if metric not in ("recall", "ndcg", "precision", "hit", "map") or not k.isdigit():
        raise TrainError(f"valid_metric={config['valid_metric']!r}: expected e.g. recall@20")
    if int(k) not in config["topk"]:
        raise TrainError(f"valid_metric {config['valid_metric']} needs K={k} in topk {config['topk']}")
    device = config["device"]
    if not (device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise TrainError(f"device={device!r}: choose auto, cpu, cuda or cuda:N")


def dump_config(config: dict[str, Any]) -> str:
    """YAML text of a resolved configuration (key order kept)."""
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)


def parse_grid(items: list[str] | tuple[str, ...]) -> dict[str, list[Any]]:
    """``--grid lr=1e-3,5e-4`` -> ``{"lr": ["1e-3", "5e-4"]}`` parsed as YAML scalars."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or not raw.strip():
            raise TrainError(f"bad --grid {item!r}: expected key=v1,v2,...")
        grid[key.strip()] = [parse_set(f"x={v}")[1] for v in raw.split(",")]
    return grid
