"""The suite spec (``recipes/suites/*.yaml``): which datasets, models, grids, seeds, protocol and budget.

A suite is a whole study in one file. Keys (all but ``name``, ``dataset`` and ``models`` are optional):

```
name: tiktok                       # names the default output directory suites/<name>
dataset: out/tiktok                # a dataset directory, or a list of them (relative to the current directory)
models: [mf, lightgcn]             # names, or a mapping name -> {grid:, set:, published:}
grid: recipe                       # per-model default: recipe (the recipe's grid:), none, or {key: [values]}
seeds: [1, 2, 3]                   # every grid point runs every seed
protocol: {split: warm, mask_val_at_test: true, legacy_ndcg: lattice}
budget: {max_minutes: 30, epochs: 1000}
set: {threads: 1}                  # config keys applied to every trial
baseline: lightgcn                 # the model the report tests the others against [lightgcn, else the first]
metric: recall@20                  # selection metric (validation only)
published: {lightgcn: {recall@20: 0.0653, source: "..."}}
```

Loading does not import torch; every error is one line naming the suite file and the key (and its line).
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmtrain.errors import TrainError

log = logging.getLogger(__name__)

SPEC_KEYS = (
    "name",
    "dataset",
    "models",
    "grid",
    "seeds",
    "protocol",
    "budget",
    "set",
    "baseline",
    "metric",
    "published",
)
MODEL_KEYS = ("grid", "set", "published")
PROTOCOL_KEYS = ("split", "mask_val_at_test", "legacy_ndcg")
BUDGET_KEYS = ("max_minutes", "epochs")
GRID_WORDS = ("recipe", "none")
MIN_SEEDS = 3


@dataclass
class SuiteModel:
    """One model of a suite: its grid (``"recipe"``, ``"none"`` or ``{key: [values]}``), the config keys set
    for it only, and the published numbers to compare with (``{metric: value, "source": text}``)."""

    name: str
    grid: str | dict[str, list[Any]] = "recipe"
    sets: dict[str, Any] = field(default_factory=dict)
    published: dict[str, Any] = field(default_factory=dict)


@dataclass
class SuiteSpec:
    """A validated suite spec; ``path`` is the file it was read from."""

    path: Path
    name: str
    datasets: list[Path]
    models: list[SuiteModel]
    seeds: list[int]
    protocol: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    sets: dict[str, Any] = field(default_factory=dict)
    baseline: str = "lightgcn"
    metric: str = "recall@20"

    def resolved(self) -> dict[str, Any]:
        """The spec with its defaults filled in, as written to ``SUITE_DIR/suite.yaml``."""
        return {
            "name": self.name,
            "source": str(self.path),
            "dataset": [str(d) for d in self.datasets],
            "models": {
                m.name: {"grid": m.grid, "set": m.sets, "published": m.published} for m in self.models
            },
            "seeds": self.seeds,
            "protocol": self.protocol,
            "budget": self.budget,
            "set": self.sets,
            "baseline": self.baseline,
            "metric": self.metric,
        }


class _Located:
    """Line numbers of the keys of a YAML document, for errors that point into the suite file."""

    def __init__(self, path: Path, text: str):
        self.path = path
        try:
            self.root = yaml.compose(text)
        except yaml.YAMLError:
            self.root = None

    def line(self, keys: tuple[str, ...]) -> int | None:
        node, line = self.root, None
        for key in keys:
            if not isinstance(node, yaml.MappingNode):
                break
            for k, v in node.value:
                if k.value == key:
                    node, line = v, k.start_mark.line + 1
                    break
            else:
                break
        return line

    def error(self, keys: tuple[str, ...], problem: str) -> TrainError:
        """``path:line: key.path: problem``."""
        return TrainError(f"{'.'.join(keys)}: {problem}", self.path, self.line(keys))


def _unknown(keys: list[str], allowed: tuple[str, ...]) -> str:
    bad = keys[0]
    near = difflib.get_close_matches(bad, list(allowed), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"unknown key {bad!r}{hint}; allowed: {', '.join(allowed)}"


def _mapping(loc: _Located, keys: tuple[str, ...], value: Any, allowed: tuple[str, ...] | None) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise loc.error(keys, f"expected a mapping, got {type(value).__name__}")
    if any(not isinstance(k, str) for k in value):
        raise loc.error(keys, "keys must be strings")
    if allowed is not None and (extra := [k for k in value if k not in allowed]):
        raise loc.error((*keys, extra[0]), _unknown(extra, allowed))
    return dict(value)


def _grid(loc: _Located, keys: tuple[str, ...], value: Any) -> str | dict[str, list[Any]]:
    if value is None:
        return "none"
    if isinstance(value, str):
        if value not in GRID_WORDS:
            raise loc.error(keys, f"{value!r}: expected 'recipe', 'none' or a mapping key -> [values]")
        return value
    grid = _mapping(loc, keys, value, None)
    out = {}
    for key, values in grid.items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise loc.error((*keys, key), "give at least one value")
        out[key] = values
    return out


def _published(loc: _Located, keys: tuple[str, ...], value: Any) -> dict[str, Any]:
    pub = _mapping(loc, keys, value, None)
    for metric, number in pub.items():
        if metric == "source":
            if not isinstance(number, str):
                raise loc.error((*keys, metric), "expected text")
        elif not isinstance(number, (int, float)) or isinstance(number, bool):
            raise loc.error((*keys, metric), f"expected a number, got {number!r}")
    return pub


def load_suite(path: Path | str) -> SuiteSpec:
    """Read and validate a suite spec; a user error (one line: file, line, key, problem) when it is wrong."""
    path = Path(path)
    if not path.is_file():
        raise TrainError("suite file not found", path)
    text = path.read_text(encoding="utf-8")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise TrainError(
            f"invalid YAML ({getattr(e, 'problem', e)})", path, mark.line + 1 if mark else None
        ) from None
    loc = _Located(path, text)
    if not isinstance(doc, dict):
        raise TrainError("a suite must be a mapping of keys (name, dataset, models, ...)", path)
    doc = _mapping(loc, (), doc, SPEC_KEYS)
    for key in ("name", "dataset", "models"):
        if doc.get(key) in (None, "", [], {}):
            raise TrainError(f"missing required key {key!r}", path)
    name = doc["name"]
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise loc.error(("name",), f"{name!r}: expected a non-empty name without '/'")
    datasets = doc["dataset"] if isinstance(doc["dataset"], list) else [doc["dataset"]]
    if any(not isinstance(d, str) or not d for d in datasets):
        raise loc.error(("dataset",), "expected a dataset directory or a list of them")
    default_grid = _grid(loc, ("grid",), doc.get("grid", "recipe"))
    models = _models(loc, doc["models"], default_grid)
    seeds = doc.get("seeds", [999])
    seeds = seeds if isinstance(seeds, list) else [seeds]
    if not seeds or any(not isinstance(s, int) or isinstance(s, bool) for s in seeds):
        raise loc.error(("seeds",), f"{doc.get('seeds')!r}: expected a list of integers")
    if len(set(seeds)) != len(seeds):
        raise loc.error(("seeds",), f"{seeds}: seeds must be distinct")
    if len(seeds) < MIN_SEEDS:
        log.warning(
            "%s: %d seed(s); a real comparison needs at least %d (mean and std over seeds)",
            path,
            len(seeds),
            MIN_SEEDS,
        )
    metric = doc.get("metric", "recall@20")
    if not isinstance(metric, str) or "@" not in metric:
        raise loc.error(("metric",), f"{metric!r}: expected a metric like recall@20")
    names = [m.name for m in models]
    baseline = doc.get("baseline", "lightgcn" if "lightgcn" in names else names[0])
    if baseline not in names:
        raise loc.error(("baseline",), f"{baseline!r} is not one of the suite's models ({', '.join(names)})")
    published = _mapping(loc, ("published",), doc.get("published"), None)
    for model, numbers in published.items():
        if model not in names:
            raise loc.error(("published", model), f"not one of the suite's models ({', '.join(names)})")
        numbers = _published(loc, ("published", model), numbers)
        spec = models[names.index(model)]
        spec.published = {**numbers, **spec.published}
    return SuiteSpec(
        path=path,
        name=name,
        datasets=[Path(d) for d in datasets],
        models=models,
        seeds=seeds,
        protocol=_mapping(loc, ("protocol",), doc.get("protocol"), PROTOCOL_KEYS),
        budget=_mapping(loc, ("budget",), doc.get("budget"), BUDGET_KEYS),
        sets=_mapping(loc, ("set",), doc.get("set"), None),
        baseline=baseline,
        metric=metric,
    )


def _models(loc: _Located, value: Any, default_grid: str | dict[str, list[Any]]) -> list[SuiteModel]:
    if isinstance(value, list):
        if any(not isinstance(v, str) for v in value):
            raise loc.error(("models",), "a list of models must hold model names")
        if len(set(value)) != len(value):
            twice = next(v for v in value if value.count(v) > 1)
            raise loc.error(("models",), f"{twice!r} is listed twice")
        value = dict.fromkeys(value)
    entries = _mapping(loc, ("models",), value, None)
    models = []
    for name, entry in entries.items():
        keys = ("models", name)
        entry = _mapping(loc, keys, entry, MODEL_KEYS)
        models.append(
            SuiteModel(
                name=name,
                grid=_grid(loc, (*keys, "grid"), entry["grid"]) if "grid" in entry else default_grid,
                sets=_mapping(loc, (*keys, "set"), entry.get("set"), None),
                published=_published(loc, (*keys, "published"), entry.get("published")),
            )
        )
    return models
