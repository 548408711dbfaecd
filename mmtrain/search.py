"""Grid search: the points of a grid, one run per (point, seed), and choosing a point on validation only."""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmformat.atomic import write_json, write_text
from mmtrain.experiment import make_config, run_experiment
from mmtrain.runs import format_table

log = logging.getLogger(__name__)


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of the grid's values, in key order (one empty point for an empty grid)."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def select_point(rows: list[dict[str, Any]], keys: list[str], valid_metric: str) -> dict[str, Any]:
    """The grid point with the best mean ``val_<valid_metric>`` over its seeds, with its mean test metrics.

    Test metrics are only averaged and reported for the chosen point; they never influence the choice.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(str(row[k]) for k in keys), []).append(row)
    val_key = f"val_{valid_metric}"
    scored = [(float(np.mean([r[val_key] for r in g])), g) for g in groups.values()]
    best_value, best = max(scored, key=lambda t: t[0])
    tests = sorted({k for r in best for k in r if k.startswith("test_")})
    return {
        "valid_metric": valid_metric,
        "point": {k: best[0][k] for k in keys},
        "seeds": [r["seed"] for r in best],
        f"{val_key}_mean": best_value,
        "test_mean": {k[len("test_") :]: float(np.mean([r[k] for r in best])) for k in tests},
        "test_std": {k[len("test_") :]: float(np.std([r[k] for r in best])) for k in tests},
        "runs": [r["run"] for r in best],
    }


def write_grid_results(grid_dir: Path, rows: list[dict[str, Any]], selection: dict[str, Any]) -> None:
    """``results.csv`` (one row per run) and ``selection.json`` in the grid directory."""
    grid_dir = Path(grid_dir)
    grid_dir.mkdir(parents=True, exist_ok=True)
    write_text(grid_dir / "results.csv", format_table(rows, "csv"))
    write_json(grid_dir / "selection.json", selection)


def flat_row(final: dict[str, Any]) -> dict[str, Any]:
    """best_epoch, epochs_run, val_<metric> and test_<metric> columns of a run's final.json."""
    row = {"best_epoch": final["best_epoch"], "epochs_run": final["epochs_run"]}
    row.update({f"val_{k}": v for k, v in final["val"].items() if k != "n_users"})
    row.update({f"test_{k}": v for k, v in final["test"].items() if k != "n_users"})
    return row


@dataclass
class GridResult:
    """What :func:`run_grid` did: its directory, one row per run, and the selection."""

    path: Path
    rows: list[dict[str, Any]]
    selection: dict[str, Any]


def run_grid(
    model: str,
    dataset: Path,
    grid: dict[str, list[Any]],
    seeds: list[int],
    sets: list[tuple[str, Any]] | tuple = (),
    recipe: Path | None = None,
    out: Path = Path("runs"),
    progress: bool = True,
) -> GridResult:
    """One run per (grid point, seed) under ``out/grid-MODEL-DATASET-TIME/``, then ``results.csv`` and
    ``selection.json``. Every config is resolved (and validated) before the first run starts, so a bad value
    anywhere in the grid fails before any training."""
    points = grid_points(grid)
    configs = [
        (point, seed, make_config(model, recipe, [*sets, *point.items(), ("seed", seed)]))
        for point, seed in itertools.product(points, seeds)
    ]
    grid_dir = Path(out) / f"grid-{model}-{Path(dataset).name}-{time.strftime('%Y%m%d-%H%M%S')}"
    rows = []
    for i, (point, seed, config) in enumerate(configs, 1):
        label = ",".join(f"{k}={v}" for k, v in point.items()) or "defaults"
        log.info("grid run %d/%d: %s seed %d", i, len(configs), label, seed)
        name = f"{i:03d}-" + "-".join(f"{k}{v}" for k, v in point.items()) + f"-s{seed}"
        result = run_experiment(dataset, config, out=grid_dir, name=name, progress=progress)
        rows.append({"run": result.path.name, **point, "seed": seed, **flat_row(result.final)})
    selection = select_point(rows, list(points[0]), configs[0][2]["valid_metric"])
    write_grid_results(grid_dir, rows, selection)
    return GridResult(grid_dir, rows, selection)
