"""The dataset format: write, reload identically, verify, and atomic replacement."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from mmformat.atomic import atomic_dir
from mmformat.errors import FormatError, UserError
from mmprep.dataset import load_dataset, verify_dataset
from mmprep.dataset.writer import DatasetWriter
from tests.format.helpers import write_small as _write_small


def test_round_trip_is_identical(tmp_path):
    out = tmp_path / "ds"
    users, items, rating, ts, label = _write_small(out)
    ds = load_dataset(out)
    assert (ds.n_users, ds.n_items, ds.name) == (3, 4, "small")
    inter = ds.interactions()
    order = np.lexsort((items, users))
    assert np.array_equal(inter.user_idx, users[order]) and np.array_equal(inter.item_idx, items[order])
    assert np.array_equal(inter.rating, rating[order]) and np.array_equal(inter.timestamp, ts[order])
    splits = ds.splits("warm")
    assert [len(splits[n]) for n in ("train", "val", "test")] == [4, 2, 1]
    assert splits["test"].user_idx.tolist() == [1] and splits["test"].item_idx.tolist() == [2]
    feat, mask = ds.feature("image")
    assert feat.dtype == np.float32 and feat.shape == (4, 2) and mask.tolist() == [True, True, False, True]
    assert ds.items.column("title").to_pylist() == ["A", None, "C", "D"]
    assert ds.users.column("user_id").to_pylist() == ["ua", "ub", "uc"]
    assert verify_dataset(out) == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert [f["path"] for f in manifest["files"]] == [
        "features/image.mask.npy",
        "features/image.npy",
        "interactions.parquet",
        "items.parquet",
        "splits/test.parquet",
        "splits/train.parquet",
        "splits/val.parquet",
        "users.parquet",
    ]


def test_verify_detects_a_changed_file(tmp_path):
    out = tmp_path / "ds"
    _write_small(out)
    np.save(out / "features" / "image.npy", np.zeros((4, 2), dtype=np.float32))
    assert verify_dataset(out) == ["features/image.npy: sha256 differs from manifest"]


def test_missing_feature_and_missing_cold_split_are_clear_errors(tmp_path):
    out = tmp_path / "ds"
    _write_small(out)
    ds = load_dataset(out)
    with pytest.raises(FormatError, match="no 'text' features \\(available: image\\)"):
        ds.feature("text")
    with pytest.raises(FormatError, match="no cold splits .*mmprep cold-start"):
        ds.splits("cold")


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(RuntimeError), DatasetWriter(out) as w:
        w.users(["a"])
        raise RuntimeError("crash in the middle")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite_and_is_replaced_whole(tmp_path):
    out = tmp_path / "ds"
    _write_small(out)
    with pytest.raises(UserError, match="already exists"):
        _write_small(out)
    (out / "stale.txt").write_text("old")
    _write_small(out, overwrite=True)
    assert not (out / "stale.txt").exists()
    assert verify_dataset(out) == []


def test_atomic_dir_keeps_old_output_when_the_new_one_fails(tmp_path):
    out = tmp_path / "ds"
    _write_small(out)
    with pytest.raises(ValueError), atomic_dir(out, overwrite=True) as tmp:
        (tmp / "partial").write_text("x")
        raise ValueError
    assert verify_dataset(out) == []


def test_unsupported_format_version(tmp_path):
    out = tmp_path / "ds"
    _write_small(out)
    m = json.loads((out / "manifest.json").read_text())
    m["format_version"] = 99
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(FormatError, match="format_version 99 is not supported"):
        load_dataset(out)


def test_outputs_follow_the_umask_not_mkstemp_modes(tmp_path):
    """A dataset on a shared volume must be readable by other users (mkdtemp/mkstemp alone give 0700/0600)."""
    from mmformat.atomic import write_json

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "ds") as tmp:
            write_json(tmp / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "ds").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "ds" / "a.json").stat().st_mode) == 0o644
