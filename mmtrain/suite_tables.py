"""A suite's tables: ``trials.csv`` (one row per trial), ``selection.json`` (validation only), the dry-run
listing, and the report when ``mmtrain.report`` is installed."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from mmformat.atomic import write_json, write_text
from mmtrain.suite_spec import SuiteSpec
from mmtrain.suite_trials import FINAL, STATUSES, TRIAL_JSON, Trial, read_trial_json, trial_dir, trial_status

log = logging.getLogger(__name__)


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
        if final is not None and info.get("status") != "done":  # killed between final.json and trial.json
            info = {**info, **t.record("done", stop_reason=final.get("stop_reason"))}
            write_json(trial_dir(suite_dir, t) / TRIAL_JSON, info)
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


def write_report(suite_dir: Path, baseline: str) -> None:
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
