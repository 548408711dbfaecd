"""``mmprep cold-start``: add the MICRO item cold-start split set (``cold/``) to a dataset."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pyarrow as pa

from mmformat import layout as fmt
from mmformat.atomic import write_parquet
from mmprep.dataset.reader import load_dataset
from mmprep.dataset.writer import interactions_table, update_dataset
from mmprep.errors import PrepError
from mmprep.progress import console
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


@click.command("cold-start")
@click.argument("dataset_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--cold-ratio", default=0.2, show_default=True, help="Share of items made cold (half val, half test)."
)
@click.option("--seed", default=123, show_default=True, help="Seed of the cold item draw (MICRO uses 123).")
def cold_start_cmd(dataset_dir: Path, cold_ratio: float, seed: int) -> None:
    """Add the MICRO item cold-start splits to DATASET_DIR (written to DATASET_DIR/cold/).

    Cold items get no training interactions; every interaction of a val-cold (test-cold) item is in
    cold/val.parquet (cold/test.parquet). Re-running replaces the previous cold split atomically.

    \b
    Examples:
      mmprep cold-start out/baby
      mmprep cold-start out/baby --cold-ratio 0.2 --seed 123
      mmtrain run --model micro --dataset out/baby --split cold
    """
    if not dataset_dir.is_dir():
        raise PrepError("dataset directory not found", dataset_dir)
    entry = add_cold_split(dataset_dir, cold_ratio, seed)
    c = entry["counts"]
    console.print(
        f"cold items: {entry['cold_items']['val']:,} val + {entry['cold_items']['test']:,} test; "
        f"interactions train {c['train']:,} / val {c['val']:,} / test {c['test']:,} -> {dataset_dir}/cold"
    )


COMMANDS = [cold_start_cmd]
