"""Suites: a whole study (datasets x models x grid points x seeds) in one command, that survives a killed driver.

```
SUITE_DIR/
  suite.yaml             the resolved spec (defaults filled in)
  trials/<trial_id>/     one run directory per trial (mmtrain.runs) plus trial.json (model, dataset, point,
                         seed, status done|running|failed, stop_reason, error)
  trials.csv             one row per trial
  selection.json         per model the grid point with the best mean validation metric over its seeds
  leaderboard.md/.json, report.html   written by mmtrain.report when it is installed
```

``trial_id`` is the first 12 hex digits of the sha256 of the trial's fully resolved config and the dataset's
manifest sha256, so a trial always maps to the same folder. A trial is finished when its ``final.json``
exists; rerunning a suite skips finished trials. An unfinished trial (killed driver, reboot, preempted node) or
a failed one restarts from scratch in a clean folder: runs do not yet write a resumable checkpoint. Test
metrics are recorded but never drive a choice: selection reads validation only.

Importing this module does not import torch; expanding and running trials does.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import logging
import os
import shutil
import socket
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mmformat.atomic import write_json, write_text
from mmformat.hashing import sha256_file
from mmformat.layout import MANIFEST
from mmtrain.config import find_recipe, read_recipe
from mmtrain.errors import TrainError
from mmtrain.suite_spec import ModelSpec, SuiteSpec, load_suite

log = logging.getLogger(__name__)

TRIALS, TRIAL_JSON, FINAL = "trials", "trial.json", "final.json"
LOCK = ".suite.lock"
STATUSES = ("done", "todo", "running", "failed")

__all__ = ["SuiteFailed", "Trial", "expand_trials", "load_suite", "run_suite", "trial_status"]


class SuiteFailed(TrainError):
    """Some trials of a suite failed; the others finished and the suite's tables were written."""


@dataclass
class Trial:
    """One run of a suite: a model at one grid point and one seed on one dataset, with its resolved config."""

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


def trial_id(config: dict[str, Any], manifest_sha256: str) -> str:
    """First 12 hex digits of sha256 over the canonical JSON of the config and the dataset manifest's sha256."""
    text = json.dumps(
        {"config": config, "dataset_manifest_sha256": manifest_sha256},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def model_grid(model: ModelSpec) -> dict[str, list[Any]]:
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


def _manifest_sha256(spec: SuiteSpec, dataset: Path) -> str:
    manifest = dataset / MANIFEST
    if not manifest.is_file():
        raise TrainError(
            f"dataset {dataset}: not a dataset directory (no {MANIFEST}); paths are relative to the current "
            "directory; write one with `mmprep import` or `mmprep build`",
            spec.path,
        )
    return sha256_file(manifest)


def _resolve(spec: SuiteSpec, model: ModelSpec, layers: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The trial's config: the model's recipe, then each layer in order; a bad key names its layer."""
    from mmtrain.experiment import make_config

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
        sha = _manifest_sha256(spec, dataset)
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
                    trials.append(Trial(tid, model.name, dataset, point, seed, config))
    return trials


def trial_dir(suite_dir: Path, trial: Trial) -> Path:
    return Path(suite_dir) / TRIALS / trial.trial_id


def read_trial_json(folder: Path) -> dict[str, Any] | None:
    """A trial folder's ``trial.json``, or None when it is missing or unreadable (a killed writer)."""
    try:
        return json.loads((folder / TRIAL_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        if info.get("host") != socket.gethostname() or _pid_alive(int(info.get("pid", 0))):
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
    """Run one trial into ``SUITE_DIR/trials/<trial_id>/`` from scratch and return its ``trial.json``.

    A trial that raises is recorded as failed (one-line ``error``, plus the traceback for bugs) instead of
    propagating, so the rest of the suite goes on. The run is written to ``<trial_id>/<trial_id>/`` by
    :func:`mmtrain.experiment.run_experiment` and its files moved up when it ends.
    """
    from mmtrain.experiment import run_experiment

    folder = trial_dir(suite_dir, trial)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.time()
    base = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": _now()}
    write_json(folder / TRIAL_JSON, trial.record("running", **base))
    try:
        result = run_experiment(
            trial.dataset, trial.config, out=folder, name=trial.trial_id, progress=progress
        )
    except Exception as e:
        _move_up(folder / trial.trial_id, folder)
        error = " ".join(f"{type(e).__name__}: {e}".split())
        extra = {} if isinstance(e, TrainError) else {"traceback": traceback.format_exc()}
        record = trial.record("failed", **base, error=error, seconds=time.time() - started, **extra)
        write_json(folder / TRIAL_JSON, record)
        log.error("trial %s failed: %s", trial.trial_id, error)
        return record
    _move_up(folder / trial.trial_id, folder)
    record = trial.record(
        "done", **base, stop_reason=result.final.get("stop_reason"), seconds=time.time() - started
    )
    write_json(folder / TRIAL_JSON, record)
    return record


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@contextmanager
def suite_lock(suite_dir: Path) -> Iterator[None]:
    """Hold ``SUITE_DIR/.suite.lock`` so that two drivers never run the same suite at once."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform
        yield
        return
    path = Path(suite_dir) / LOCK
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise TrainError(
                f"another `mmtrain suite` is running on this directory (pid {f.read().strip() or '?'})",
                suite_dir,
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _finals(suite_dir: Path, trials: list[Trial]) -> dict[str, dict[str, Any]]:
    finals = {}
    for t in trials:
        path = trial_dir(suite_dir, t) / FINAL
        if path.is_file():
            finals[t.trial_id] = json.loads(path.read_text(encoding="utf-8"))
    return finals


def trial_rows(suite_dir: Path, trials: list[Trial]) -> list[dict[str, Any]]:
    """One ``trials.csv`` row per trial: identity, status, epochs, val_/test_ metrics, cost."""
    finals = _finals(suite_dir, trials)
    metrics = [k for f in finals.values() for k in f["val"] if k != "n_users"]
    metrics = list(dict.fromkeys(metrics))
    rows = []
    for t in trials:
        final = finals.get(t.trial_id)
        info = read_trial_json(trial_dir(suite_dir, t)) or {}
        row: dict[str, Any] = {
            "trial_id": t.trial_id,
            "model": t.model,
            "dataset": t.dataset.name,
            "point": json.dumps(t.point, sort_keys=True),
            "seed": t.seed,
            "status": trial_status(suite_dir, t),
            "stop_reason": (final or info).get("stop_reason"),
            "best_epoch": final and final["best_epoch"],
            "epochs_run": final and final["epochs_run"],
        }
        for split in ("val", "test"):
            row.update({f"{split}_{m}": final and final[split].get(m) for m in metrics})
        row["s_per_epoch"] = final and final.get("seconds_per_epoch")
        row["peak_rss_mib"] = final and (final.get("peak_memory_mib") or {}).get("rss")
        rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["trial_id"], lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    return buf.getvalue()


def select(spec: SuiteSpec, trials: list[Trial], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (dataset, model): the grid point with the best mean validation ``spec.metric`` over its finished
    seeds (ties: the first in grid order). Test metrics are not read. Keys are model names; with several
    datasets ``model/dataset``."""
    val_key = f"val_{spec.metric}"
    by_id = {r["trial_id"]: r for r in rows}
    groups: dict[tuple[str, str], dict[str, list[Trial]]] = {}
    for t in trials:
        point_key = json.dumps(t.point, sort_keys=True)
        groups.setdefault((t.dataset.name, t.model), {}).setdefault(point_key, []).append(t)
    models: dict[str, Any] = {}
    for (dataset, model), points in groups.items():
        best = None
        for members in points.values():
            done = [t for t in members if by_id[t.trial_id]["status"] == "done"]
            values = [by_id[t.trial_id][val_key] for t in done if by_id[t.trial_id].get(val_key) is not None]
            if not values:
                continue
            mean = float(np.mean(values))
            if best is None or mean > best[0]:
                best = (mean, values, done, members)
        if best is None:
            log.warning("%s on %s: no finished trial, nothing selected", model, dataset)
            continue
        mean, values, done, members = best
        key = model if len(spec.datasets) == 1 else f"{model}/{dataset}"
        models[key] = {
            "model": model,
            "dataset": dataset,
            "point": done[0].point,
            "trial_ids": [t.trial_id for t in done],
            "seeds": [t.seed for t in done],
            "val_mean": mean,
            "val_std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "complete": len(done) == len(members),
        }
    return {"metric": spec.metric, "baseline": spec.baseline, "models": models}


def write_tables(spec: SuiteSpec, trials: list[Trial], suite_dir: Path) -> dict[str, Any]:
    """Write ``trials.csv`` and ``selection.json``; return the selection."""
    rows = trial_rows(suite_dir, trials)
    write_text(Path(suite_dir) / "trials.csv", _csv(rows))
    selection = select(spec, trials, rows)
    write_json(Path(suite_dir) / "selection.json", selection)
    return selection


def _write_report(suite_dir: Path, baseline: str) -> None:
    """``mmtrain.report.write_report`` when that module is installed; one info line when it is not."""
    try:
        from mmtrain.report import write_report
    except ModuleNotFoundError as e:
        if e.name not in ("mmtrain.report", "mmtrain"):
            raise
        log.info("mmtrain.report is not available: leaderboard and report.html not written")
        return
    write_report(suite_dir, baseline=baseline)


def dry_run_table(suite_dir: Path, trials: list[Trial]) -> str:
    """The trials with their status, one per line, and a count per status."""
    statuses = [trial_status(suite_dir, t) for t in trials]
    lines = [f"{t.trial_id}  {s:<7}  {t.label()}" for t, s in zip(trials, statuses, strict=True)]
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in STATUSES)
    lines.append(f"{len(trials)} trials in {suite_dir}: {counts}")
    return "\n".join(lines) + "\n"


def default_out(spec: SuiteSpec) -> Path:
    return Path("suites") / spec.name


def run_suite(
    spec_path: Path | str,
    out_dir: Path | str | None = None,
    resume: bool = True,
    dry_run: bool = False,
    executor: str = "auto",
    address: str | None = None,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
    progress: bool = False,
) -> Path:
    """Run every unfinished trial of the suite at ``spec_path`` into ``out_dir`` (default ``suites/<name>``),
    then write ``trials.csv``, ``selection.json`` and the report; return the suite directory.

    ``resume`` skips finished trials (``--no-resume`` reruns all). ``dry_run`` prints the trials and their
    status and writes nothing. ``executor``: ``serial`` (in this process, one after another), ``ray`` (one
    Ray task per trial), ``auto`` (Ray when it is installed). Raises :class:`SuiteFailed` at the end when a
    trial failed.
    """
    from mmtrain.suite_exec import choose_executor

    spec = load_suite(spec_path)
    suite_dir = Path(out_dir) if out_dir is not None else default_out(spec)
    trials = expand_trials(spec)
    if dry_run:
        print(dry_run_table(suite_dir, trials), end="")
        return suite_dir
    run = choose_executor(executor)
    (suite_dir / TRIALS).mkdir(parents=True, exist_ok=True)
    with suite_lock(suite_dir):
        write_text(suite_dir / "suite.yaml", yaml.safe_dump(spec.resolved(), sort_keys=False))
        todo = [t for t in trials if not (resume and trial_status(suite_dir, t) == "done")]
        log.info(
            "suite %s: %d trials, %d finished, %d to run -> %s",
            spec.name,
            len(trials),
            len(trials) - len(todo),
            len(todo),
            suite_dir,
        )
        if todo:
            run(todo, suite_dir, address=address, cpus=cpus_per_trial, gpus=gpus_per_trial, progress=progress)
        write_tables(spec, trials, suite_dir)
        _write_report(suite_dir, spec.baseline)
    failed = [t.trial_id for t in trials if trial_status(suite_dir, t) == "failed"]
    if failed:
        raise SuiteFailed(
            f"{len(failed)} of {len(trials)} trials failed ({', '.join(failed)}): "
            f"the error is in trials/<id>/trial.json; rerun the suite to retry them",
            suite_dir,
        )
    return suite_dir
