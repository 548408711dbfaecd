"""Add the MICRO item cold-start split set (``cold/``) to a dataset directory (``mmprep cold-start``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from mmformat import layout as fmt
from mmformat.atomic import write_parquet
from mmprep.dataset.reader import load_dataset
from mmprep.dataset.writer import interactions_table, update_dataset
from mmprep.split.cold import cold_split


def add_cold_split(root: Path, cold_ratio: float = 0.2, seed: int = 123) -> dict:
    """Write ``cold/{train,val,test}.parquet`` and ``cold/cold_items.parquet``; returns the manifest entry."""
    ds = load_dataset(root)
    inter = ds.interactions()
    split = cold_split(inter.item_idx, ds.n_items, cold_ratio=cold_ratio, seed=seed)
    train_users = np.zeros(ds.n_users, dtype=bool)
    train_users[inter.user_idx[split.label == 0]] = True
    eval_rows = split.label > 0
    entry = {
        "method": "micro-item-cold-start",
        "cold_ratio": cold_ratio,
        "seed": seed,
        "counts": split.counts(),
        "cold_items": {"val": len(split.val_items), "test": len(split.test_items)},
        "eval_users_without_train": int(
            np.unique(inter.user_idx[eval_rows & ~train_users[inter.user_idx]]).size
        ),
    }

    def write(tmp: Path) -> None:
        for code, name in enumerate(fmt.SPLIT_NAMES):
            rows = split.label == code
            table = interactions_table(
                inter.user_idx[rows],
                inter.item_idx[rows],
                None if inter.rating is None else inter.rating[rows],
                None if inter.timestamp is None else inter.timestamp[rows],
            )
            write_parquet(tmp / f"{name}.parquet", table)
        items = np.r_[split.val_items, split.test_items].astype(np.int32)
        roles = ["val"] * len(split.val_items) + ["test"] * len(split.test_items)
        order = np.argsort(items, kind="stable")
        table = pa.table(
            [pa.array(items[order]), pa.array(np.asarray(roles)[order])], schema=fmt.COLD_ITEM_SCHEMA
        )
        write_parquet(tmp / Path(fmt.COLD_ITEMS).name, table)

    splits = dict(ds.manifest.get("splits", {}))
    splits["cold"] = entry
    update_dataset(Path(root), fmt.SPLIT_SETS["cold"], write, {"splits": splits})
    return entry
