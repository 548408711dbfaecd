"""Trials of a suite: expanding a spec into trials, where each one lives, its status, and running one.

A trial is one run (mmtrain.experiment.run_experiment) of a model at one grid point and one seed on one
dataset. Its folder ``SUITE_DIR/trials/<trial_id>/`` is a normal run directory plus ``trial.json``; the id is
the first 12 hex digits of the sha256 of the trial's resolved config and the dataset's content digest.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmformat.atomic import pid_alive, write_json
from mmformat.hashing import sha256_json
from mmformat.layout import MANIFEST
from mmformat.manifest import content_sha256, read_manifest
from mmtrain.config import find_recipe, read_recipe
from mmtrain.errors import TrainError
from mmtrain.suite_spec import SuiteModel, SuiteSpec

log = logging.getLogger(__name__)

TRIALS, TRIAL_JSON, FINAL = "trials", "trial.json", "final.json"
STATUSES = ("done", "todo", "running", "failed")


@dataclass
class Trial:
    """One run of a suite: a model at one grid point and one seed on one dataset (an absolute path, so that Ray
    workers in other directories find it), with its resolved config."""

    trial_id: str
    model: str
    dataset: Path
    point: dict[str, Any]
    seed: int
    config: dict[str, Any]

    def record(self, status: str, **extra: Any) -> dict[str, Any]:
        """The ``trial.json`` content for ``status``."""
        return {
            "trial_id": self.trial_id,
            "model": self.model,
            "dataset": str(self.dataset),
            "point": self.point,
            "seed": self.seed,
            "status": status,
            **extra,
        }

    def label(self) -> str:
        point = ",".join(f"{k}={v}" for k, v in self.point.items()) or "recipe params"
        return f"{self.model} [{point}] seed {self.seed} on {self.dataset.name}"


def trial_id(config: dict[str, Any], dataset_sha256: str) -> str:
    """First 12 hex digits of sha256 over the canonical JSON of the config and the dataset's content digest."""
    return sha256_json({"config": config, "dataset_content_sha256": dataset_sha256})[:12]


def model_grid(model: SuiteModel) -> dict[str, list[Any]]:
    """The grid a suite searches for ``model``: its own, the recipe's ``grid:`` section, or none."""
    if isinstance(model.grid, dict):
        return model.grid
    if model.grid == "none":
        return {}
    recipe = find_recipe(model.name)
    grid = (read_recipe(recipe).get("grid") or {}) if recipe else {}
    return {k: v if isinstance(v, list) else [v] for k, v in grid.items()}


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of a grid's values in key order; one empty point for an empty grid."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def _content_sha256(spec: SuiteSpec, dataset: Path) -> str:
    """The dataset's content digest (:func:`mmformat.manifest.content_sha256`): the same data re-imported on
    another day or machine keeps its trials."""
    if not (dataset / MANIFEST).is_file():
        raise TrainError(
            f"dataset {dataset}: not a dataset directory (no {MANIFEST}); paths are relative to the current "
            "directory; write one with `mmprep import` or `mmprep build`",
            spec.path,
        )
    return content_sha256(read_manifest(dataset))


def _resolve(spec: SuiteSpec, model: SuiteModel, layers: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The trial's config: the model's recipe, then each layer in order; a bad key names its layer."""
    from mmtrain.config import make_config

    try:
        return make_config(model.name, None, [kv for _, values in layers for kv in values.items()])
    except TrainError as e:
        for n in range(1, len(layers) + 1):  # find the first layer that makes the config invalid
            try:
                make_config(model.name, None, [kv for _, values in layers[:n] for kv in values.items()])
            except TrainError as inner:
                problem = inner.problem.removeprefix("--set: ")
                raise TrainError(f"{layers[n - 1][0]}: {problem}", spec.path) from None
        raise TrainError(f"models.{model.name}: {e.problem}", spec.path) from None


def expand_trials(spec: SuiteSpec) -> list[Trial]:
    """Every trial of a suite: datasets x models x grid points x seeds, in that order (grid order kept)."""
    trials: list[Trial] = []
    seen: set[str] = set()
    for dataset in spec.datasets:
        sha = _content_sha256(spec, dataset)
        for model in spec.models:
            for point in grid_points(model_grid(model)):
                for seed in spec.seeds:
                    layers = [
                        ("set", spec.sets),
                        ("protocol", spec.protocol),
                        ("budget", spec.budget),
                        ("metric", {"valid_metric": spec.metric}),
                        (f"models.{model.name}.set", model.sets),
                        (f"models.{model.name}.grid", point),
                        ("seeds", {"seed": seed}),
                    ]
                    config = _resolve(spec, model, layers)
                    tid = trial_id(config, sha)
                    if tid in seen:
                        log.warning(
                            "%s: %s %s resolves to a trial listed before; run once",
                            spec.path,
                            model.name,
                            point,
                        )
                        continue
                    seen.add(tid)
                    trials.append(Trial(tid, model.name, Path(os.path.abspath(dataset)), point, seed, config))
    return trials


def trial_dir(suite_dir: Path, trial: Trial) -> Path:
    return Path(suite_dir) / TRIALS / trial.trial_id


def read_trial_json(folder: Path) -> dict[str, Any] | None:
    """A trial folder's ``trial.json``, or None when it is missing or unreadable (a killed writer)."""
    try:
        return json.loads((folder / TRIAL_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def trial_status(suite_dir: Path, trial: Trial) -> str:
    """``done`` (final.json exists), ``failed``, ``running`` (its process is alive, or on another host), or
    ``todo`` (never started, or interrupted: it will restart)."""
    folder = trial_dir(suite_dir, trial)
    if (folder / FINAL).is_file():
        return "done"
    info = read_trial_json(folder) or {}
    if info.get("status") == "failed":
        return "failed"
    if info.get("status") == "running":
        if info.get("host") != socket.gethostname() or pid_alive(int(info.get("pid", 0))):
            return "running"
    return "todo"


def _move_up(inner: Path, folder: Path) -> None:
    """Move the run directory's files from ``inner`` into the trial folder, ``final.json`` last (it marks the
    trial finished)."""
    if not inner.is_dir():
        return
    entries = sorted(inner.iterdir(), key=lambda p: p.name == FINAL)
    for entry in entries:
        os.replace(entry, folder / entry.name)
    inner.rmdir()


def run_trial(trial: Trial, suite_dir: Path, progress: bool = False) -> dict[str, Any]:
    """Run one trial into ``SUITE_DIR/trials/<trial_id>/`` and return its ``trial.json``.

    The run is written to ``<trial_id>/<trial_id>/`` by :func:`mmtrain.experiment.run_experiment` and its files
    moved up when it ends. An interrupted trial (a killed driver or node) whose run left a ``last.pt`` is
    continued from it (:func:`mmtrain.experiment.resume_experiment`: the same numbers as an uninterrupted run on
    CPU); one without starts again from scratch. A trial that raises is recorded as failed (one-line
    ``error``, plus the traceback for bugs) instead of propagating, so the rest of the suite goes on.
    """
    from mmtrain.experiment import resume_experiment, run_experiment
    from mmtrain.runs import LAST

    folder = trial_dir(suite_dir, trial)
    inner = folder / trial.trial_id
    resumable = (inner / LAST).is_file()
    if not resumable:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    base = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": _now()}
    if resumable:
        base["resumed"] = True
        log.info("trial %s: resuming from %s", trial.trial_id, inner / LAST)
    write_json(folder / TRIAL_JSON, trial.record("running", **base))
    try:
        if resumable:
            result = resume_experiment(inner, progress=progress)
        else:
            result = run_experiment(
                trial.dataset, trial.config, out=folder, name=trial.trial_id, progress=progress
            )
    except Exception as e:
        _move_up(inner, folder)
        error = " ".join(f"{type(e).__name__}: {e}".split())
        extra = {} if isinstance(e, TrainError) else {"traceback": traceback.format_exc()}
        record = trial.record("failed", **base, error=error, seconds=time.time() - started, **extra)
        write_json(folder / TRIAL_JSON, record)
        log.error("trial %s failed: %s", trial.trial_id, error)
        return record
    _move_up(inner, folder)
    record = trial.record(
        "done", **base, stop_reason=result.final.get("stop_reason"), seconds=time.time() - started
    )
    write_json(folder / TRIAL_JSON, record)
    return record


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
