"""Imports of foreign layouts: tiny files that ask for huge index spaces are refused before allocating, and
DiffMM val/test pickles narrower than train are padded (issue 13)."""

from __future__ import annotations

import json
import logging
import pickle

import numpy as np
import scipy.sparse as sp

from mmprep.dataset import load_dataset
from mmprep.interop import import_diffmm
from tests.mmprep.oneline import one_line_error, run_cli


def _pickles(src, mats):
    src.mkdir(exist_ok=True)
    for name, m in zip(("trnMat.pkl", "valMat.pkl", "tstMat.pkl"), mats, strict=True):
        with open(src / name, "wb") as f:
            pickle.dump(m, f, protocol=4)


def _coo(rows, cols, shape):
    return sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)


def test_diffmm_pickle_with_a_huge_shape_is_refused(tmp_path):
    huge = (10**10, 10**10)
    src = tmp_path / "dm"
    _pickles(src, [_coo([0, 1], [0, 1], huge), _coo([1], [0], huge), _coo([0], [1], huge)])
    assert (src / "trnMat.pkl").stat().st_size < 2000
    result = run_cli("import", "--format", "diffmm", src, "--out", tmp_path / "o")
    one_line_error(result, str(src / "trnMat.pkl"), "shape (10000000000, 10000000000) is implausible")
    assert not (tmp_path / "o").exists()


def test_diffmm_shape_bounded_by_the_number_of_values(tmp_path):
    src = tmp_path / "dm"
    wide = (3, 50_000_000)  # fits int32, but 50M items for 3 interactions is no real dataset
    _pickles(src, [_coo([0, 1, 2], [0, 1, 2], wide), _coo([1], [0], wide), _coo([0], [1], wide)])
    result = run_cli("import", "--format", "diffmm", src, "--out", tmp_path / "o")
    one_line_error(result, str(src / "trnMat.pkl"), "at most 1,000,000")


def test_lattice_item_id_of_1e15_without_a_map_is_refused(tmp_path):
    src = tmp_path / "lat"
    src.mkdir()
    (src / "train.json").write_text(json.dumps({"0": [0, 1], "1": [1, 10**15]}))
    (src / "val.json").write_text(json.dumps({"0": [1]}))
    (src / "test.json").write_text(json.dumps({"1": [0]}))
    result = run_cli("import", "--format", "lattice", src, "--out", tmp_path / "o")
    one_line_error(result, str(src / "train.json"), f"item id {10**15} (record of user 1) is too large")


def test_lattice_user_key_of_1e15_without_a_map_is_refused(tmp_path):
    src = tmp_path / "lat"
    src.mkdir()
    (src / "train.json").write_text(json.dumps({"0": [0, 1], "1": [1]}))
    (src / "val.json").write_text(json.dumps({str(10**15): [1]}))
    (src / "test.json").write_text(json.dumps({"1": [0]}))
    result = run_cli("import", "--format", "lattice", src, "--out", tmp_path / "o")
    one_line_error(result, str(src / "val.json"), f"user id {10**15} is too large")


def test_mmrec_id_of_1e15_without_a_map_names_the_line(tmp_path):
    src = tmp_path / "mm"
    src.mkdir()
    rows = ["userID\titemID\tx_label", "0\t0\t0", "1\t1\t0", f"1\t{10**15}\t1", "0\t1\t2"]
    (src / "toy.inter").write_text("\n".join(rows) + "\n")
    result = run_cli("import", "--format", "mmrec", src, "--out", tmp_path / "o")
    one_line_error(result, f"{src / 'toy.inter'}:4:", f"item id {10**15} is too large")


def test_diffmm_val_and_test_narrower_than_train_are_padded(tmp_path, caplog):
    train = _coo([0, 0, 1, 2, 2], [0, 4, 1, 2, 3], (3, 5))
    val = _coo([1, 2], [0, 1], (3, 3))  # items 3 and 4 have no val interaction, so the export dropped them
    test = _coo([0, 1], [1, 2], (3, 4))
    src = tmp_path / "dm"
    _pickles(src, [train, val, test])
    with caplog.at_level(logging.WARNING, logger="mmprep.interop.diffmm"):
        ds = load_dataset(import_diffmm(src, tmp_path / "o"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "valMat.pkl has 2 fewer item columns" in warnings[0]
    assert "tstMat.pkl has 1 fewer item columns" in warnings[0]
    assert ds.manifest["params"]["padded_columns"] == {"val": 2, "test": 1}
    assert (ds.n_users, ds.n_items) == (3, 5)
    splits = ds.splits("warm")
    for name, pairs in (("val", [(1, 0), (2, 1)]), ("test", [(0, 1), (1, 2)])):
        users, items = splits[name].user_idx.tolist(), splits[name].item_idx.tolist()
        assert sorted(zip(users, items, strict=True)) == pairs


def test_diffmm_val_wider_than_train_is_still_refused(tmp_path):
    src = tmp_path / "dm"
    _pickles(src, [_coo([0], [0], (3, 4)), _coo([1], [4], (3, 5)), _coo([2], [1], (3, 4))])
    result = run_cli("import", "--format", "diffmm", src, "--out", tmp_path / "o")
    one_line_error(result, str(src / "valMat.pkl"), "shape (3, 5) differs from trnMat.pkl (3, 4)")
