"""The leaderboard of a suite directory: ``leaderboard.json``, ``leaderboard.md`` and ``report.html``.

Reads what ``mmtrain suite`` leaves (``suite.yaml``, ``selection.json``, ``trials/<id>/`` run directories with
``trial.json``, ``final.json``, ``metrics.csv`` and the per-user metric files) and summarises, per model and
selected grid point: mean ± std over seeds of every val and test metric, the cost (s/epoch, epochs to best,
peak memory), the published number and our relative difference, and a paired Wilcoxon test against the
baseline, Holm-corrected across models (``mmtrain.stats``). The JSON schema is documented in docs/leaderboard.md.
Torch-free: ``mmtrain report`` starts without importing torch.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mmformat.atomic import write_json, write_text
from mmtrain.errors import TrainError
from mmtrain.per_user import read_per_user
from mmtrain.report_render import render_html, render_markdown
from mmtrain.stats import holm, marker, mean_std, seed_average, wilcoxon_paired

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_BASELINE = "lightgcn"
DEFAULT_METRIC = "recall@20"
LEADERBOARD_JSON, LEADERBOARD_MD, REPORT_HTML = "leaderboard.json", "leaderboard.md", "report.html"


def read_json(path: Path) -> Any:
    """Parse a JSON file; missing or malformed is a one-line :class:`TrainError` naming the file and line."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainError("file not found", path) from None
    except json.JSONDecodeError as e:
        raise TrainError(f"invalid JSON ({e.msg})", path, e.lineno) from None


def read_suite_spec(suite_dir: Path) -> dict[str, Any]:
    """``suite.yaml`` of a suite directory as a dict (empty when absent)."""
    path = Path(suite_dir) / "suite.yaml"
    if not path.is_file():
        return {}
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise TrainError("invalid YAML", path, mark.line + 1 if mark else None) from None
    if not isinstance(spec, dict):
        raise TrainError("expected a mapping at the top level", path)
    return spec


def published_numbers(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per model ``{metric: value, "source": str}`` from the spec's ``published:`` and ``models: {m:
    {published:}}`` (the per-model entry wins)."""
    out = {m: dict(v) for m, v in (spec.get("published") or {}).items() if isinstance(v, dict)}
    models = spec.get("models")
    if isinstance(models, dict):
        for name, entry in models.items():
            if isinstance(entry, dict) and isinstance(entry.get("published"), dict):
                out.setdefault(name, {}).update(entry["published"])
    return out


def read_curve(run_dir: Path, metric: str) -> list[tuple[float, float]]:
    """``(epoch, val_<metric>)`` of the evaluated epochs in a run's metrics.csv (empty when absent)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    points = []
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            value = row.get(f"val_{metric}")
            if value not in (None, ""):
                try:
                    points.append((float(row["epoch"]), float(value)))
                except (KeyError, ValueError):
                    raise TrainError(f"bad epoch or val_{metric} value", path) from None
    return points


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _stat(values: list[Any]) -> dict[str, float | None]:
    mean, std = mean_std([float(v) for v in values if isinstance(v, (int, float))])
    return {"mean": mean, "std": std}


def _finished_trials(suite_dir: Path, key: str, selected: dict[str, Any]) -> list[dict[str, Any]]:
    """The selected trials of one selection entry that have a final.json, with their trial.json."""
    trials = []
    for trial_id in selected.get("trial_ids") or []:
        run = Path(suite_dir) / "trials" / str(trial_id)
        if not (run / "final.json").is_file():
            log.warning("%s: trial %s of %s has no final.json; left out", suite_dir, trial_id, key)
            continue
        info = read_json(run / "trial.json") if (run / "trial.json").is_file() else {}
        trials.append(
            {"id": str(trial_id), "path": run, "final": read_json(run / "final.json"), "trial": info}
        )
    return trials


def model_entry(key: str, selected: dict[str, Any], trials: list[dict[str, Any]]) -> dict[str, Any]:
    """One leaderboard row (schema in docs/leaderboard.md) from the finished trials of a selected point."""
    finals = [t["final"] for t in trials]
    metrics = {split: [m for m in finals[0].get(split, {}) if m != "n_users"] for split in ("val", "test")}
    memory = [f.get("peak_memory_mib") or {} for f in finals]
    stops: dict[str, int] = {}
    for f in finals:
        reason = str(f.get("stop_reason") or "epochs")
        stops[reason] = stops.get(reason, 0) + 1
    return {
        "key": key,
        "model": finals[0].get("model", trials[0]["trial"].get("model", key)),
        "dataset": finals[0].get("dataset", trials[0]["trial"].get("dataset")),
        "point": selected.get("point") or {},
        "trial_ids": [t["id"] for t in trials],
        "seeds": [f.get("seed", t["trial"].get("seed")) for f, t in zip(finals, trials, strict=True)],
        "n_seeds": len(trials),
        "stop_reasons": stops,
        **{
            split: {m: _stat([f.get(split, {}).get(m) for f in finals]) for m in names}
            for split, names in metrics.items()
        },
        "seconds_per_epoch": _stat([f.get("seconds_per_epoch") for f in finals]),
        "epochs_to_best": _stat([f.get("best_epoch") for f in finals]),
        "epochs_run": _stat([f.get("epochs_run") for f in finals]),
        "peak_memory_mib": {kind: _stat([m.get(kind) for m in memory]) for kind in ("rss", "gpu")},
    }


def compare_published(entry: dict[str, Any], published: dict[str, Any] | None) -> dict[str, Any] | None:
    """Published value, our test mean and ``(ours - published) / published`` per published metric."""
    if not published:
        return None
    rows = {}
    for metric, value in published.items():
        if metric == "source" or not isinstance(value, (int, float)):
            continue
        ours = entry["test"].get(metric, {}).get("mean")
        rel = (ours - value) / value if ours is not None and value else None
        rows[metric] = {"published": float(value), "ours": ours, "relative_diff": rel}
    return {"source": published.get("source"), "metrics": rows}


def _seed_averaged(trials: list[dict[str, Any]], metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-user test ``metric`` of the trials averaged over seeds; None (with a warning) when a trial has no
    per-user file or the file lacks the metric."""
    runs = []
    for t in trials:
        try:
            users, values = read_per_user(t["path"], "test")
        except TrainError as err:
            log.warning("no significance test: %s", err)
            return None
        if metric not in values:
            log.warning("no significance test: %s has no per-user %s", t["path"], metric)
            return None
        runs.append((users, values[metric]))
    return seed_average(runs)


def add_significance(
    entries: list[dict[str, Any]], trials: dict[str, list], baseline: str, metric: str
) -> None:
    """Set each entry's ``significance`` (None for the baseline itself or when it cannot be computed): the
    Wilcoxon test vs the baseline of the same dataset, Holm-corrected across the models of that dataset."""
    for dataset in dict.fromkeys(e["dataset"] for e in entries):
        group = [e for e in entries if e["dataset"] == dataset]
        base = next((e for e in group if e["model"] == baseline), None)
        for e in group:
            e["significance"] = None
        if base is None:
            log.warning(
                "baseline %s is not in the suite for dataset %s: no significance tests", baseline, dataset
            )
            continue
        base_values = _seed_averaged(trials[base["key"]], metric)
        if base_values is None:
            continue
        tested = []
        for e in group:
            if e is base:
                continue
            values = _seed_averaged(trials[e["key"]], metric)
            if values is None:
                continue
            r = wilcoxon_paired(*values, *base_values)
            if r.p is None:
                log.warning("%s and %s share no evaluated user: no significance test", e["key"], baseline)
                continue
            e["significance"] = {
                "metric": metric,
                "split": "test",
                "baseline": baseline,
                "n_users": r.n_users,
                "mean": r.mean,
                "baseline_mean": r.baseline_mean,
                "statistic": r.statistic,
                "p": r.p,
            }
            tested.append(e)
        for e, p in zip(tested, holm([e["significance"]["p"] for e in tested]), strict=True):
            e["significance"].update(p_holm=p, marker=marker(p), n_tests=len(tested))


def build_leaderboard(
    suite_dir: Path, baseline: str | None = None, metric: str | None = None
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The leaderboard dict and, per entry key, its finished trials (paths, final.json, trial.json)."""
    suite_dir = Path(suite_dir)
    selection = read_json(suite_dir / "selection.json")
    if not isinstance(selection, dict) or not isinstance(selection.get("models"), dict):
        raise TrainError('expected {"metric": ..., "models": {model: {...}}}', suite_dir / "selection.json")
    spec = read_suite_spec(suite_dir)
    baseline = baseline or spec.get("baseline") or DEFAULT_BASELINE
    metric = metric or selection.get("metric") or spec.get("metric") or DEFAULT_METRIC
    published = published_numbers(spec)
    entries, trials = [], {}
    for key, selected in selection["models"].items():
        found = _finished_trials(suite_dir, key, selected)
        if not found:
            log.warning("%s: no finished trial for %s; left out of the leaderboard", suite_dir, key)
            continue
        entry = model_entry(key, selected, found)
        entry["published"] = compare_published(entry, published.get(entry["model"]) or published.get(key))
        entries.append(entry)
        trials[key] = found
    if not entries:
        raise TrainError("no finished trial among the selected points", suite_dir / "selection.json")
    add_significance(entries, trials, baseline, metric)
    entries.sort(key=lambda e: -_or(e["test"].get(metric, {}).get("mean"), -np.inf))
    board = {
        "schema_version": SCHEMA_VERSION,
        "suite": spec.get("name") or suite_dir.name,
        "datasets": list(dict.fromkeys(e["dataset"] for e in entries)),
        "metric": metric,
        "selection_metric": selection.get("metric") or metric,
        "baseline": baseline,
        "test": "two-sided Wilcoxon signed-rank on per-user test metric averaged over seeds, paired on the users "
        "both have; Holm correction across the models of a dataset; * p<0.05, ** p<0.01 after Holm",
        "models": entries,
    }
    return board, trials


def write_report(suite_dir: Path, baseline: str | None = None, metric: str | None = None) -> dict[str, Any]:
    """Write ``leaderboard.json``, ``leaderboard.md`` and ``report.html`` into ``suite_dir`` (each atomically)
    and return the leaderboard dict. ``baseline`` defaults to the suite's (else lightgcn), ``metric`` (the
    tested and charted metric) to the selection metric."""
    suite_dir = Path(suite_dir)
    board, trials = build_leaderboard(suite_dir, baseline, metric)
    curves = {
        key: [(t["final"].get("seed"), read_curve(t["path"], board["selection_metric"])) for t in found]
        for key, found in trials.items()
    }
    write_json(suite_dir / LEADERBOARD_JSON, board)
    write_text(suite_dir / LEADERBOARD_MD, render_markdown(board))
    write_text(suite_dir / REPORT_HTML, render_html(board, curves))
    log.info("wrote %s, %s and %s in %s", LEADERBOARD_JSON, LEADERBOARD_MD, REPORT_HTML, suite_dir)
    return board
