"""Grid search bookkeeping: the points of a grid, and choosing one on validation only."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from mmformat.atomic import write_json, write_text
from mmtrain.runs import format_table


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
