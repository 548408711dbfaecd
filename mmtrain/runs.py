"""Run directories: what one training run leaves behind, and tables comparing runs.

```
<run>/
  config.yaml     the resolved configuration (defaults < recipe < --set)
  versions.json   torch (and its CPU threads), python, numpy, mmtrain, git commit, device, dataset path, manifest sha256 and content digest, Docker image (when run in one)
  metrics.csv     one row per epoch: losses, seconds, lr, and the val metrics on evaluation epochs
  tensorboard/    the same scalars as TensorBoard events (torch.utils.tensorboard)
  best.pt         the checkpoint of the best validation epoch (model name, config, state_dict, epoch)
  last.pt         while the run trains: the state after the last finished epoch, for ``mmtrain run --resume``
                  (model, optimizers, scheduler, every random state, early stopping, metrics rows, time
                  spent); removed once final.json is written
  final.json      best epoch, val metrics at it, test metrics (evaluated once, at the end), timings, why the
                  run stopped, peak memory (GPU allocated, process RSS)
  curve.png       training loss and validation metric per epoch
```
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import platform
import subprocess
import sys
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import mmtrain
from mmformat.allocator import keeps_freed_memory
from mmformat.atomic import remove_stale_temps, replace_from_tmp, write_json, write_lock, write_text
from mmformat.errors import UserError
from mmtrain.config import dump_config
from mmtrain.errors import TrainError
from mmtrain.stats import mean_std

if TYPE_CHECKING:  # torch is imported where it is used: `mmtrain compare` starts without it
    import torch

log = logging.getLogger(__name__)

CONFIG, VERSIONS, METRICS_CSV, CHECKPOINT, FINAL, CURVE, TENSORBOARD = (
    "config.yaml",
    "versions.json",
    "metrics.csv",
    "best.pt",
    "final.json",
    "curve.png",
    "tensorboard",
)
LAST = "last.pt"


def git_commit() -> str | None:
    """HEAD of the repository mmtrain is imported from, when it is a git checkout and git is installed."""
    repo = Path(mmtrain.__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo`` on Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def reset_peak_memory(device: torch.device) -> None:
    """Start counting :func:`peak_memory`'s GPU peak from the memory allocated now."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, float | None]:
    """Peak memory of this process in MiB: ``gpu`` (torch's allocated peak on ``device`` since
    :func:`reset_peak_memory`; None on CPU) and ``rss`` (resident set peak of the whole process; None where the
    platform has no ``resource`` module)."""
    import torch

    gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    try:
        import resource
    except ImportError:
        return {"gpu": gpu, "rss": None}
    scale = 2**20 if sys.platform == "darwin" else 2**10  # ru_maxrss: bytes on macOS, KiB on Linux
    return {"gpu": gpu, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale}


def versions(
    device: torch.device, dataset_root: Path, manifest_sha256: str, content_sha256: str
) -> dict[str, Any]:
    """Everything needed to say what produced a run (the dataset by its manifest and by its content digest)."""
    import torch

    info = {
        "mmtrain": mmtrain.__version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),  # CPU s/epoch depends on it
        "keeps_freed_memory": keeps_freed_memory(),  # and on this (mmformat.allocator, docs/runs.md)
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "dataset": str(Path(dataset_root).resolve()),
        "dataset_manifest_sha256": manifest_sha256,
        "dataset_content_sha256": content_sha256,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if image := os.environ.get("MODALREC_IMAGE"):
        info["image"] = image  # set in the Docker image: which image (tag, base, build date) ran this
    return info


class RunDir:
    """Writer for one run directory (layout in the module docstring); every file is written atomically.

    The writer holds the run's lock (``.<run>.lock`` beside it) until :meth:`close`, so a second process
    resuming a run that is still going fails with one line instead of interleaving epochs."""

    def __init__(self, path: Path, tensorboard: bool = True):
        self.path = Path(path)
        self._lock = ExitStack()
        try:
            self._lock.enter_context(write_lock(self.path))
        except UserError as e:
            holder = e.problem.rpartition("(")[2].rstrip(")")
            raise TrainError(f"another process ({holder}) is writing this run", self.path) from None
        self.path.mkdir(parents=True, exist_ok=True)
        for folder in (self.path.parent, *(p for p in self.path.parent.iterdir() if p.is_dir())):
            remove_stale_temps(folder)  # files half-written by killed runs (kill -9) under the same output
        self.rows: list[dict[str, Any]] = []
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.path / TENSORBOARD))

    @staticmethod
    def new_path(out: Path, name: str) -> Path:
        """``out/name``, or ``out/name-2``, ``-3``... when it exists."""
        path, n = Path(out) / name, 1
        while path.exists():
            n += 1
            path = Path(out) / f"{name}-{n}"
        return path

    def write_config(self, config: dict[str, Any]) -> None:
        write_text(self.path / CONFIG, dump_config(config))

    def write_versions(self, info: dict[str, Any]) -> None:
        write_json(self.path / VERSIONS, info)

    def log_epoch(self, row: dict[str, Any]) -> None:
        """Append one epoch's row to metrics.csv (rewritten whole, atomically) and to TensorBoard."""
        self.rows.append(row)
        self._write_metrics()
        if self._tb is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key.replace("@", "_at_"), value, row["epoch"])
            self._tb.flush()

    def restore_rows(self, rows: list[dict[str, Any]]) -> None:
        """Set the epoch rows of a resumed run (from last.pt) and rewrite metrics.csv with exactly them: a run
        killed after writing last.pt but before its metrics.csv row gets the row back."""
        self.rows = list(rows)
        self._write_metrics()

    def _write_metrics(self) -> None:
        columns: list[str] = []
        for r in self.rows:
            columns += [c for c in r if c not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.path / METRICS_CSV, buf.getvalue())

    def save_checkpoint(self, state: dict[str, Any], name: str = CHECKPOINT) -> None:
        """Write ``best.pt`` (or ``name``) atomically. The state is serialised in memory first and written with
        plain file I/O, so a full disk is an ``OSError`` (one line from the CLI, old checkpoint kept), not the
        opaque ``RuntimeError`` torch's own file writer raises."""
        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        replace_from_tmp(self.path / name, lambda tmp: Path(tmp).write_bytes(buf.getbuffer()))

    def save_last(self, state: dict[str, Any]) -> None:
        """Write ``last.pt``, the resume state after an epoch, as :meth:`save_checkpoint` writes best.pt."""
        self.save_checkpoint(state, LAST)

    def load_last(self) -> dict[str, Any]:
        """The resume state of ``last.pt``; a missing or unreadable file is a one-line TrainError."""
        import torch

        path = self.path / LAST
        if not path.is_file():
            raise TrainError(
                "no last.pt: the run stopped before its first epoch ended; start it again", self.path
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file is a user error, not a crash
            raise TrainError(f"unreadable resume state ({type(e).__name__})", path) from None
        if not isinstance(state, dict) or "rng" not in state or "model" not in state:
            raise TrainError("not an mmtrain resume state (no model/rng)", path)
        return state

    def remove_last(self) -> None:
        """Delete ``last.pt`` once the run is finished (final.json written): best.pt keeps the model."""
        (self.path / LAST).unlink(missing_ok=True)

    def write_final(self, result: dict[str, Any]) -> None:
        write_json(self.path / FINAL, result)

    def plot(self, valid_metric: str) -> None:
        """curve.png: mean training loss and the validation metric per epoch (matplotlib, Agg backend)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        epochs = [r["epoch"] for r in self.rows]
        ax.plot(epochs, [r["loss"] for r in self.rows], color="tab:blue", label="train loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("train loss", color="tab:blue")
        key = f"val_{valid_metric}"
        evals = [(r["epoch"], r[key]) for r in self.rows if r.get(key) not in (None, "")]
        if evals:
            ax2 = ax.twinx()
            ax2.plot(*zip(*evals, strict=True), color="tab:red", marker=".", label=key)
            ax2.set_ylabel(key, color="tab:red")
        ax.set_title(self.path.name)
        fig.tight_layout()
        replace_from_tmp(self.path / CURVE, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
        plt.close(fig)

    def close(self) -> None:
        """Close TensorBoard and release the run's lock."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        self._lock.close()


def is_run(path: Path) -> bool:
    return (Path(path) / FINAL).is_file() and (Path(path) / CONFIG).is_file()


def expand_runs(paths: list[Path] | tuple[Path, ...]) -> list[Path]:
    """Run directories among ``paths``; a directory that is not a run contributes its run sub-directories."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if is_run(p):
            runs.append(p)
        elif p.is_dir():
            runs += sorted(c for c in p.rglob("*") if c.is_dir() and is_run(c))
        else:
            raise TrainError("not a run directory (no final.json)", p)
    if not runs:
        raise TrainError("no finished runs (directories with final.json) found under the given paths")
    return runs


def load_run(path: Path) -> dict[str, Any]:
    """``{"path", "config", "final"}`` of a finished run."""
    import yaml

    path = Path(path)
    try:
        config = yaml.safe_load((path / CONFIG).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise TrainError(f"unreadable run config ({str(e).splitlines()[0]})", path / CONFIG) from None
    try:
        final = json.loads((path / FINAL).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TrainError(f"unreadable final.json ({str(e).splitlines()[0]})", path / FINAL) from None
    if not isinstance(config, dict) or "model" not in config:
        raise TrainError("run config is not a mapping with a model", path / CONFIG)
    if not isinstance(final, dict) or not all(isinstance(final.get(k, {}), dict) for k in ("val", "test")):
        raise TrainError("final.json is not an object with val/test metric objects", path / FINAL)
    return {"path": path, "config": config, "final": final}


def run_row(run: dict[str, Any], metrics: list[str]) -> dict[str, Any]:
    """One table row: identity of the run, its best epoch, val selection metric and test metrics."""
    cfg, final = run["config"], run["final"]
    row = {
        "run": run["path"].name,
        "model": cfg["model"],
        "dataset": final.get("dataset", ""),
        "split": cfg.get("split", ""),
        "seed": cfg.get("seed", ""),
        "best_epoch": final.get("best_epoch", ""),
        "epochs": final.get("epochs_run", ""),
        f"val_{cfg.get('valid_metric', 'recall@20')}": final.get("val", {}).get(cfg.get("valid_metric", "")),
    }
    for m in metrics:
        row[f"test_{m}"] = final.get("test", {}).get(m)
    return row


NOT_HYPERPARAMETERS = ("model", "seed", "device", "threads", "tensorboard", "eval_batch_size")


def hyperparameter_keys(runs: list[dict[str, Any]]) -> list[str]:
    """Config keys whose value differs between runs of the same model: the grid's keys (and anything else
    varied by hand), seed and machine-only keys aside, in config order."""
    keys: list[str] = []
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_model.setdefault(r["config"]["model"], []).append(r["config"])
    for configs in by_model.values():
        for key in dict.fromkeys(k for c in configs for k in c):
            values = {json.dumps(c.get(key), sort_keys=True, default=str) for c in configs}
            if key not in NOT_HYPERPARAMETERS and len(values) > 1 and key not in keys:
                keys.append(key)
    return keys


def _text(value: Any) -> str | None:
    """A hyperparameter value as written in a config (``1e-05``, not a table's rounded ``0.0000``)."""
    return None if value is None else str(value)


def group_rows(runs: list[dict[str, Any]], metrics: list[str]) -> list[dict[str, Any]]:
    """One row per (model, dataset, split, hyperparameter values): the seeds, and for each number of
    :func:`run_row` its mean and sample std over the seeds (``<column>_std``)."""
    hp = hyperparameter_keys(runs)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in runs:
        cfg = r["config"]
        point = tuple(json.dumps(cfg.get(k), sort_keys=True, default=str) for k in hp)
        groups.setdefault(
            (cfg["model"], r["final"].get("dataset", ""), cfg.get("split", ""), point), []
        ).append(r)
    rows = []
    for (model, dataset, split, _), members in groups.items():
        cfg = members[0]["config"]
        members = sorted(members, key=lambda m: (str(type(m["config"].get("seed"))), m["config"].get("seed")))
        per_run = [run_row(m, metrics) for m in members]
        row: dict[str, Any] = {"model": model, "dataset": dataset, "split": split}
        row.update({k: _text(cfg.get(k)) for k in hp})
        row["seeds"] = ",".join(str(r["seed"]) for r in per_run)
        row["n"] = len(members)
        numbers = [c for c in per_run[0] if c not in ("run", "model", "dataset", "split", "seed")]
        for column in numbers:
            mean, std = mean_std([r.get(column) for r in per_run if isinstance(r.get(column), (int, float))])
            row[column], row[f"{column}_std"] = mean, std
        row["runs"] = ",".join(r["run"] for r in per_run)
        rows.append(row)
    return rows


def merge_std(rows: list[dict[str, Any]], digits: int = 4) -> list[dict[str, Any]]:
    """Rows of :func:`group_rows` with each ``<column>`` / ``<column>_std`` pair as one ``mean ± std`` text."""
    merged = []
    for row in rows:
        out: dict[str, Any] = {}
        for key, value in row.items():
            if key.endswith("_std") and key[: -len("_std")] in row:
                continue
            std = row.get(f"{key}_std")
            if f"{key}_std" in row and isinstance(value, float):
                value = f"{value:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")
            out[key] = value
        merged.append(out)
    return merged


def compare_rows(
    paths: list[Path] | tuple[Path, ...], metrics: list[str] | None = None, per_run: bool = False
) -> list[dict[str, Any]]:
    """Rows for ``mmtrain compare``: one per (model, grid point) with mean and std over seeds
    (:func:`group_rows`), or with ``per_run`` one per run; both keep the hyperparameters that vary. A damaged
    run is skipped with a warning."""
    runs = []
    for p in expand_runs(paths):
        try:
            runs.append(load_run(p))
        except TrainError as e:  # one damaged run must not hide the others
            log.warning("skipped run: %s", e)
    if not runs:
        raise TrainError("no readable finished runs under the given paths (see the warnings above)")
    if metrics is None:
        metrics = ["recall@10", "recall@20", "recall@50", "ndcg@10", "ndcg@20", "ndcg@50"]
        if any("ndcg_lattice@20" in r["final"].get("test", {}) for r in runs):
            metrics.append("ndcg_lattice@20")
    if not per_run:
        return group_rows(runs, metrics)
    hp = hyperparameter_keys(runs)
    rows = []
    for r in runs:
        row = run_row(r, metrics)
        at = list(row).index("seed")
        items = list(row.items())
        rows.append(dict(items[:at] + [(k, _text(r["config"].get(k))) for k in hp] + items[at:]))
    return rows


def format_table(rows: list[dict[str, Any]], fmt: str = "md") -> str:
    """Markdown (default; floats to 4 decimals) or CSV (full precision) text of dict rows (union of keys)."""
    columns: list[str] = []
    for r in rows:
        columns += [c for c in r if c not in columns]

    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.4f}"
        return str(v)

    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: "" if r.get(c) is None else r.get(c) for c in columns} for r in rows)
        return buf.getvalue()
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"
