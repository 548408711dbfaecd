"""`mmprep cold-start` on a dataset directory, and `mmprep info` statistics."""

from __future__ import annotations

import numpy as np

from mmprep.dataset import load_dataset, verify_dataset
from mmprep.dataset.writer import DatasetWriter, interactions_table
from mmprep.info import dataset_info
from mmprep.split.cold_dataset import add_cold_split


def _dataset(out, n_users=40, n_items=30, per_user=6, seed=0):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    with DatasetWriter(out) as w:
        w.users([f"u{i}" for i in range(n_users)])
        w.items([f"i{i}" for i in range(n_items)])
        table = interactions_table(users, items)
        w.interactions(table)
        w.split_set("warm", {"train": table, "val": table.slice(0, 0), "test": table.slice(0, 0)})
        w.manifest.update(name="toy", counts={"users": n_users, "items": n_items, "interactions": len(users)})
    return users, items


def test_cold_start_split_on_disk(tmp_path):
    out = tmp_path / "toy"
    users, items = _dataset(out)
    entry = add_cold_split(out, cold_ratio=0.2, seed=123)
    assert entry["cold_items"] == {"val": 3, "test": 3}
    ds = load_dataset(out)
    cold = ds.cold_items()
    splits = ds.splits("cold")
    cold_all = set(cold["val"].tolist()) | set(cold["test"].tolist())
    assert len(cold_all) == 6
    assert not cold_all & set(splits["train"].item_idx.tolist())
    assert set(splits["val"].item_idx.tolist()) <= set(cold["val"].tolist())
    assert set(splits["test"].item_idx.tolist()) <= set(cold["test"].tolist())
    # every interaction lands in exactly one cold split
    assert sum(len(s) for s in splits.values()) == len(users)
    expected_val = int(np.isin(items, cold["val"]).sum())
    assert len(splits["val"]) == expected_val == entry["counts"]["val"]
    assert verify_dataset(out) == []
    assert ds.manifest["splits"]["cold"]["seed"] == 123
    # the warm split is untouched and a second run replaces the cold split deterministically
    before = (out / "cold" / "test.parquet").read_bytes()
    add_cold_split(out, cold_ratio=0.2, seed=123)
    assert (out / "cold" / "test.parquet").read_bytes() == before
    assert load_dataset(out).split_sets() == ["warm", "cold"]


def test_info_counts_density_and_degrees(tmp_path):
    out = tmp_path / "toy"
    _dataset(out, n_users=10, n_items=12, per_user=3)
    info = dataset_info(out)
    assert (info["users"], info["items"], info["interactions"]) == (10, 12, 30)
    assert info["density"] == 30 / 120
    assert info["user_degree"]["p0"] == 3 and info["user_degree"]["p100"] == 3
    assert info["item_degree"]["mean"] == 2.5
    assert info["splits"]["warm"] == {"train": 30, "val": 0, "test": 0}


def test_add_cold_split_lives_in_the_split_package():
    """The library function is importable without the CLI module (which only wraps it)."""
    import mmprep.commands.cold_start as command

    assert add_cold_split.__module__ == "mmprep.split.cold_dataset"
    assert "add_cold_split" not in command.__dict__ or command.add_cold_split is add_cold_split
