"""Per-user metric files of a run directory: ``val_per_user.parquet`` and ``test_per_user.parquet``.

Columns: ``user_idx`` (int32), then one float64 column per metric, named as in final.json's ``val`` / ``test``
dicts (``recall@10``, ``ndcg@20``, ...); one row per evaluated user, sorted by ``user_idx``. The mean of a
column is the final.json value. The significance tests of ``mmtrain report`` pair users through these files.
Torch-free, so that the report can read them without importing torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmformat.atomic import write_parquet
from mmtrain.errors import TrainError

SPLITS = ("val", "test")


def per_user_path(run_dir: Path, split: str) -> Path:
    """``<run_dir>/<split>_per_user.parquet``."""
    return Path(run_dir) / f"{split}_per_user.parquet"


def write_per_user(run_dir: Path, split: str, users: np.ndarray, metrics: dict[str, np.ndarray]) -> Path:
    """Write one split's per-user metrics atomically, rows sorted by user; returns the path."""
    users = np.asarray(users)
    order = np.argsort(users, kind="stable")
    columns = {"user_idx": pa.array(users[order].astype(np.int32), pa.int32())}
    for name, values in metrics.items():
        values = np.asarray(values, dtype=np.float64)
        if values.shape != users.shape:
            raise ValueError(f"metric {name}: {values.shape[0]} values for {users.shape[0]} users")
        columns[name] = pa.array(values[order], pa.float64())
    path = per_user_path(run_dir, split)
    write_parquet(path, pa.table(columns))
    return path


def read_per_user(run_dir: Path, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(user_idx [n], {metric: values [n]})`` of a run's per-user file; a missing or malformed file is a
    one-line :class:`TrainError` naming it."""
    path = per_user_path(run_dir, split)
    if not path.is_file():
        raise TrainError("per-user metrics missing (runs written before they existed lack them)", path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise TrainError(f"unreadable Parquet file ({type(e).__name__})", path) from None
    if "user_idx" not in table.column_names:
        raise TrainError("no user_idx column", path)
    users = table.column("user_idx").to_numpy()
    metrics = {
        name: table.column(name).to_numpy().astype(np.float64)
        for name in table.column_names
        if name != "user_idx"
    }
    if len(users) and np.any(np.diff(users) <= 0):
        raise TrainError("user_idx is not strictly increasing", path)
    return users, metrics
