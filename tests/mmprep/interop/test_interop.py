"""`mmprep import` / `mmprep export` of the MMRec, LATTICE and DiffMM layouts, on hand-made and real data."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from mmformat.errors import UserError
from mmprep.dataset import load_dataset, verify_dataset
from mmprep.errors import PrepError
from mmprep.interop import (
    export_diffmm,
    export_lattice,
    export_mmrec,
    import_diffmm,
    import_lattice,
    import_mmrec,
)
from mmprep.interop.safe_pickle import load_pickle
from mmprep.split.cold_dataset import add_cold_split

INTER_HEADER = "userID\titemID\trating\ttimestamp\tx_label"
# user 3 has no train row; items 2, 3 and 4 occur only in val/test
INTER_ROWS = [
    "0\t0\t5.0\t100\t0",
    "0\t1\t4.0\t200\t0",
    "0\t2\t3.5\t300\t1",
    "1\t1\t2.0\t150\t0",
    "1\t3\t1.0\t250\t2",
    "2\t0\t4.0\t120\t0",
    "2\t1\t5.0\t130\t2",
    "3\t4\t3.0\t400\t1",
]
USER_RAW = ["uA", "uB", "uC", "uD"]
ITEM_RAW = ["B000A", "B000B", "B000C", "B000D", "B000E"]


def _write_inter(path, rows, header=INTER_HEADER, newline="\n"):
    path.write_text(newline.join([header, *rows]) + newline, encoding="utf-8")


def _mmrec_dir(tmp_path, rows=INTER_ROWS, maps=True, features=True):
    src = tmp_path / "mmrec-src"
    src.mkdir()
    _write_inter(src / "toy.inter", rows, newline="\r\n")
    if maps:  # map lines deliberately out of index order
        order = [2, 0, 3, 1]
        (src / "u_id_mapping.csv").write_text(
            "user_id\tuserID\n" + "".join(f"{USER_RAW[i]}\t{i}\n" for i in order), encoding="utf-8"
        )
        (src / "i_id_mapping.csv").write_text(
            "asin\titemID\n" + "".join(f"{a}\t{i}\n" for i, a in enumerate(ITEM_RAW)), encoding="utf-8"
        )
    if features:
        rng = np.random.default_rng(0)
        np.save(src / "image_feat.npy", rng.normal(size=(5, 3)))  # float64, stored as float32
        np.save(src / "text_feat.npy", rng.normal(size=(5, 4)).astype(np.float32))
    return src


def _splits(ds, split_set="warm"):
    return {name: (s.user_idx, s.item_idx, s.rating, s.timestamp) for name, s in ds.splits(split_set).items()}


def _assert_same_dataset(a, b, features=True):
    """Identical indices, raw ids, splits (exact arrays) and features."""
    assert (a.n_users, a.n_items) == (b.n_users, b.n_items)
    assert a.users.column("user_id").to_pylist() == b.users.column("user_id").to_pylist()
    assert a.items.column("item_id").to_pylist() == b.items.column("item_id").to_pylist()
    sa, sb = _splits(a), _splits(b)
    for name in ("train", "val", "test"):
        for x, y in zip(sa[name], sb[name], strict=True):
            if x is None or y is None:
                assert x is None and y is None
            else:
                assert x.dtype == y.dtype and np.array_equal(x, y)
    if features:
        assert a.modalities() == b.modalities()
        for m in a.modalities():
            fa, fb = a.feature(m)[0], b.feature(m)[0]
            assert fa.dtype == fb.dtype == np.float32 and np.array_equal(fa, fb)


# ------------------------------------------------------------------------------------------------- MMRec


def test_import_mmrec_handmade(tmp_path):
    src = _mmrec_dir(tmp_path)
    out = import_mmrec(src, tmp_path / "toy")
    assert verify_dataset(out) == []
    ds = load_dataset(out)
    m = ds.manifest
    assert m["name"] == "toy"
    assert m["counts"] == {"users": 4, "items": 5, "interactions": 8}
    assert m["splits"]["warm"]["method"] == "imported"
    assert m["splits"]["warm"]["counts"] == {"train": 4, "val": 2, "test": 2}
    assert m["splits"]["warm"]["violations"] == {
        "users_without_train": 1,
        "items_only_in_eval": 3,
        "pairs_in_several_splits": 0,
    }
    assert m["source"]["format"] == "import-mmrec"
    roles = {f["path"]: f["role"] for f in m["source"]["files"]}
    assert roles == {
        "toy.inter": "interactions",
        "u_id_mapping.csv": "user_ids",
        "i_id_mapping.csv": "item_ids",
        "image_feat.npy": "feature:image",
        "text_feat.npy": "feature:text",
    }
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in m["source"]["files"])
    assert ds.users.column("user_id").to_pylist() == USER_RAW
    assert ds.items.column("item_id").to_pylist() == ITEM_RAW
    s = ds.splits()
    assert s["train"].user_idx.tolist() == [0, 0, 1, 2] and s["train"].item_idx.tolist() == [0, 1, 1, 0]
    assert s["train"].rating.tolist() == [5.0, 4.0, 2.0, 4.0]
    assert s["train"].timestamp.tolist() == [100, 200, 150, 120]
    assert s["val"].user_idx.tolist() == [0, 3] and s["val"].item_idx.tolist() == [2, 4]
    assert s["val"].rating.tolist() == [3.5, 3.0]
    assert s["test"].user_idx.tolist() == [1, 2] and s["test"].item_idx.tolist() == [3, 1]
    assert len(ds.interactions()) == 8
    image, mask = ds.feature("image")
    assert image.dtype == np.float32 and mask.all()
    assert np.array_equal(image, np.load(src / "image_feat.npy").astype(np.float32))
    assert m["features"]["image"] == {
        "dim": 3,
        "dtype": "float32",
        "present": 5,
        "fill": "none",
        "source": "image_feat.npy",
        "original_dtype": "float64",
    }
    assert m["features"]["text"]["dim"] == 4 and m["features"]["text"]["original_dtype"] == "float32"


def test_import_mmrec_without_maps_or_rating(tmp_path):
    src = tmp_path / "plain"
    src.mkdir()
    _write_inter(src / "ml.inter", ["0\t6\t0", "", "2\t1\t0", "2\t3\t2"], header="userID\titemID\tx_label")
    ds = load_dataset(import_mmrec(src, tmp_path / "out", name="renamed"))
    assert ds.name == "renamed"
    assert (ds.n_users, ds.n_items) == (3, 7)  # max id + 1
    assert ds.users.column("user_id").to_pylist() == ["0", "1", "2"]
    assert ds.items.column("item_id").to_pylist() == [str(i) for i in range(7)]
    assert ds.splits()["train"].rating is None and ds.splits()["train"].timestamp is None
    assert ds.manifest["splits"]["warm"]["counts"] == {"train": 2, "val": 0, "test": 1}
    assert ds.modalities() == []


def test_mmrec_round_trip(tmp_path):
    first = load_dataset(import_mmrec(_mmrec_dir(tmp_path), tmp_path / "a"))
    exported = export_mmrec(first.root, tmp_path / "exp")
    assert sorted(p.name for p in exported.iterdir()) == [
        "i_id_mapping.csv",
        "image_feat.npy",
        "text_feat.npy",
        "toy.inter",
        "u_id_mapping.csv",
    ]
    lines = (exported / "toy.inter").read_text().splitlines()
    assert lines[0] == INTER_HEADER and len(lines) == 9
    assert lines[1] == "0\t0\t5\t100\t0"
    assert (exported / "u_id_mapping.csv").read_text().splitlines()[:2] == ["user_id\tuserID", "uA\t0"]
    assert (exported / "i_id_mapping.csv").read_text().splitlines()[:2] == ["asin\titemID", "B000A\t0"]
    assert np.load(exported / "image_feat.npy").dtype == np.float32
    second = load_dataset(import_mmrec(exported, tmp_path / "b"))
    _assert_same_dataset(first, second)
    with pytest.raises(UserError, match="already exists"):
        export_mmrec(first.root, exported)


# --------------------------------------------------------------------------------------- DiffMM pickles


def _pickles(src, mats, val_name="valMat.pkl", protocol=4):
    src.mkdir(exist_ok=True)
    for name, m in zip(("trnMat.pkl", val_name, "tstMat.pkl"), mats, strict=True):
        with open(src / name, "wb") as f:
            pickle.dump(m, f, protocol=protocol)


def _coo(rows, cols, shape=(3, 4), data=None):
    data = np.ones(len(rows)) if data is None else np.asarray(data, dtype=np.float64)
    return sp.coo_matrix((data, (rows, cols)), shape=shape)


@pytest.mark.parametrize("protocol", [2, 5])
def test_import_diffmm_handmade_duplicates_zeros_overlap(tmp_path, protocol):
    train = _coo([0, 0, 0, 1, 2], [0, 1, 1, 2, 3], data=[1, 1, 1, 1, 0])  # (0,1) twice, (2,3) is a zero
    val = _coo([1], [0])
    test = _coo([2, 0], [1, 0])  # (0,0) is also in train
    _pickles(tmp_path / "src", [train, val, test], val_name="toy_valid.pkl", protocol=protocol)
    ds = load_dataset(import_diffmm(tmp_path / "src", tmp_path / "out"))
    m = ds.manifest
    assert m["params"]["val_file"] == "toy_valid.pkl"
    assert m["skipped"]["counts"] == {"duplicates": 1, "zero_entries": 1}
    assert m["splits"]["warm"]["counts"] == {"train": 3, "val": 1, "test": 2}
    assert m["splits"]["warm"]["violations"] == {
        "users_without_train": 1,
        "items_only_in_eval": 0,
        "pairs_in_several_splits": 1,
    }
    assert m["counts"] == {"users": 3, "items": 4, "interactions": 5}
    assert ds.splits()["train"].rating is None
    assert verify_dataset(ds.root) == []


def test_import_tiktok(shared_data, tmp_path):
    src = shared_data / "tiktok-mmssl"
    ds = load_dataset(import_diffmm(src, tmp_path / "tiktok"))
    assert (ds.n_users, ds.n_items) == (9308, 6710)
    assert ds.manifest["counts"]["interactions"] == 68722
    assert ds.manifest["splits"]["warm"]["counts"] == {"train": 59541, "val": 3051, "test": 6130}
    assert ds.manifest["splits"]["warm"]["violations"] == {
        "users_without_train": 10,
        "items_only_in_eval": 465,
        "pairs_in_several_splits": 0,
    }
    assert len(np.unique(ds.splits()["train"].user_idx)) == 9298
    assert ds.modalities() == ["audio", "image"]
    for modality in ("image", "audio"):
        matrix, mask = ds.feature(modality)
        source = np.load(src / f"{modality}_feat.npy")
        assert source.dtype == np.float16
        assert matrix.shape == (6710, 128) and matrix.dtype == np.float32 and mask.all()
        assert np.array_equal(matrix, source.astype(np.float32))
        assert ds.manifest["features"][modality]["original_dtype"] == "float16"
    assert ds.users.column("user_id").to_pylist()[:3] == ["0", "1", "2"]
    assert verify_dataset(ds.root) == []


def test_import_baby_and_sports_pickles(shared_data, tmp_path):
    baby = load_dataset(import_diffmm(shared_data / "amazon-baby" / "mmssl-diffmm", tmp_path / "baby"))
    assert (baby.n_users, baby.n_items) == (19445, 7050)
    assert baby.manifest["splits"]["warm"]["counts"] == {"train": 118551, "val": 21682, "test": 20559}
    assert baby.manifest["counts"]["interactions"] == 160792
    assert baby.manifest["splits"]["warm"]["violations"]["items_only_in_eval"] == 2
    sports = load_dataset(
        import_diffmm(shared_data / "amazon-sports-mmssl", tmp_path / "sports", val_file="sports_valid.pkl")
    )
    assert (sports.n_users, sports.n_items) == (35598, 18357)
    assert sports.manifest["splits"]["warm"]["counts"] == {"train": 218409, "val": 37899, "test": 40029}
    assert sports.manifest["counts"]["interactions"] == 296337
    assert sports.manifest["params"]["val_file"] == "sports_valid.pkl"
    auto = load_dataset(import_diffmm(shared_data / "amazon-sports-mmssl", tmp_path / "sports-auto"))
    assert auto.manifest["splits"]["warm"]["counts"] == sports.manifest["splits"]["warm"]["counts"]


def test_diffmm_round_trip_tiktok(shared_data, tmp_path):
    first = load_dataset(import_diffmm(shared_data / "tiktok-mmssl", tmp_path / "a"))
    exported = export_diffmm(first.root, tmp_path / "exp")
    assert sorted(p.name for p in exported.iterdir()) == [
        "audio_feat.npy",
        "image_feat.npy",
        "trnMat.pkl",
        "tstMat.pkl",
        "valMat.pkl",
    ]
    trn = load_pickle(exported / "trnMat.pkl")
    assert isinstance(trn, sp.coo_matrix) and trn.shape == (9308, 6710) and trn.nnz == 59541
    assert trn.dtype == np.float64 and np.all(trn.data == 1.0)
    original = load_pickle(shared_data / "tiktok-mmssl" / "trnMat.pkl")
    assert (trn.tocsr() != original.tocsr()).nnz == 0
    second = load_dataset(import_diffmm(exported, tmp_path / "b"))
    _assert_same_dataset(first, second)


def test_export_cold_split_set(shared_data, tmp_path):
    ds = load_dataset(import_diffmm(shared_data / "amazon-baby" / "mmssl-diffmm", tmp_path / "baby"))
    entry = add_cold_split(ds.root, cold_ratio=0.2, seed=123)
    exported = export_diffmm(ds.root, tmp_path / "cold", split_set="cold")
    again = load_dataset(import_diffmm(exported, tmp_path / "again"))
    assert again.manifest["splits"]["warm"]["counts"] == entry["counts"]
    assert again.manifest["splits"]["warm"]["violations"]["items_only_in_eval"] == 1410  # every cold item
    cold = load_dataset(ds.root).splits("cold")
    for name, s in again.splits().items():
        assert np.array_equal(s.user_idx, cold[name].user_idx) and np.array_equal(
            s.item_idx, cold[name].item_idx
        )


# ----------------------------------------------------------------------------------------- LATTICE json


def test_import_lattice_baby(shared_data, tmp_path):
    src = shared_data / "amazon-baby" / "lattice-5core"
    ds = load_dataset(import_lattice(src, tmp_path / "baby"))
    assert ds.name == "lattice-5core"
    assert (ds.n_users, ds.n_items) == (19445, 7050)
    assert ds.manifest["splits"]["warm"]["counts"] == {"train": 119674, "val": 20559, "test": 20559}
    assert ds.manifest["counts"]["interactions"] == 160792
    item2id = json.loads((src / "item2id.json").read_text())
    user2id = json.loads((src / "user2id.json").read_text())
    item_ids = ds.items.column("item_id").to_pylist()
    user_ids = ds.users.column("user_id").to_pylist()
    assert item_ids[0] == "097293751X" and user_ids[0] == "A00097001C4CLB27DQV4U"
    assert all(item_ids[i] == raw for raw, i in item2id.items())
    assert all(user_ids[i] == raw for raw, i in user2id.items())
    # the ASIN map equals MMRec's i_id_mapping.csv (PROVENANCE.md)
    mmrec_map = (shared_data / "amazon-baby" / "mmrec-maps" / "i_id_mapping.csv").read_text().splitlines()[1:]
    assert [line.split("\t")[0] for line in mmrec_map] == item_ids
    train = json.loads((src / "train.json").read_text())
    s = ds.splits()["train"]
    assert sorted(s.item_idx[s.user_idx == 3].tolist()) == sorted(train["3"])
    roles = sorted(f["role"] for f in ds.manifest["source"]["files"])
    assert roles == ["item_ids", "test", "train", "user_ids", "val"]
    assert verify_dataset(ds.root) == []


def test_lattice_round_trip_baby(shared_data, tmp_path):
    first = load_dataset(import_lattice(shared_data / "amazon-baby" / "lattice-5core", tmp_path / "a"))
    exported = export_lattice(first.root, tmp_path / "exp")
    core = exported / "5-core"
    assert sorted(p.name for p in core.iterdir()) == [
        "item_list.txt",
        "test.json",
        "train.json",
        "user-item-dict.json",
        "user_list.txt",
        "val.json",
    ]
    assert (core / "item_list.txt").read_text().splitlines()[0] == "097293751X\t0"
    ui = json.loads((core / "user-item-dict.json").read_text())
    assert sum(map(len, ui.values())) == 160792
    train_mat = load_pickle(exported / "train_mat")
    assert (
        isinstance(train_mat, sp.csr_matrix) and train_mat.shape == (19445, 7050) and train_mat.nnz == 119674
    )
    second = load_dataset(import_lattice(exported, tmp_path / "b"))
    assert second.name == "exp"
    _assert_same_dataset(first, second, features=False)


def test_lattice_round_trip_with_features(tmp_path):
    first = load_dataset(import_mmrec(_mmrec_dir(tmp_path), tmp_path / "a"))
    exported = export_lattice(first.root, tmp_path / "exp")
    assert json.loads((exported / "5-core" / "val.json").read_text()) == {"0": [2], "3": [4]}
    second = load_dataset(import_lattice(exported, tmp_path / "b"))
    assert second.splits()["train"].rating is None  # json carries no ratings
    assert np.array_equal(second.feature("image")[0], first.feature("image")[0])
    for name, s in second.splits().items():
        assert np.array_equal(s.user_idx, first.splits()[name].user_idx)
        assert np.array_equal(s.item_idx, first.splits()[name].item_idx)


def test_export_lattice_of_diffmm_baby_keeps_all_interactions(shared_data, tmp_path):
    ds = load_dataset(import_diffmm(shared_data / "amazon-baby" / "mmssl-diffmm", tmp_path / "baby"))
    exported = export_lattice(ds.root, tmp_path / "lattice")
    sizes = {
        name: sum(map(len, json.loads((exported / "5-core" / f"{name}.json").read_text()).values()))
        for name in ("train", "val", "test")
    }
    assert sizes == {"train": 118551, "val": 21682, "test": 20559}
    again = load_dataset(import_lattice(exported, tmp_path / "again"))
    assert again.manifest["counts"] == {"users": 19445, "items": 7050, "interactions": 160792}
    _assert_same_dataset(ds, again)
    # and the MMRec export of the same split reads back identically
    mmrec = export_mmrec(ds.root, tmp_path / "mmrec", name="baby")
    _assert_same_dataset(ds, load_dataset(import_mmrec(mmrec, tmp_path / "mmrec-again")))


# --------------------------------------------------------------------------------------------- bad input


def _raises(path_part, match, fn, *args, **kwargs):
    with pytest.raises(PrepError, match=match) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path_part)), message
    return message


def test_bad_diffmm_inputs(tmp_path):
    good = [_coo([0], [0]), _coo([1], [1]), _coo([2], [2])]
    src = tmp_path / "src"
    _pickles(src, good)
    (src / "tstMat.pkl").unlink()
    _raises(src / "tstMat.pkl", "missing file", import_diffmm, src, tmp_path / "o1")

    _pickles(src, [good[0], good[1], good[2].tocsr()])
    _raises(
        src / "tstMat.pkl",
        "expected a pickled scipy.sparse coo_matrix, found csr_matrix",
        import_diffmm,
        src,
        tmp_path / "o2",
    )

    _pickles(src, [good[0], good[1], {"not": "a matrix"}])
    _raises(src / "tstMat.pkl", "found dict", import_diffmm, src, tmp_path / "o3")

    _pickles(src, [good[0], _coo([0], [0], shape=(3, 5)), good[2]])
    _raises(
        src / "valMat.pkl",
        r"shape \(3, 5\) differs from trnMat.pkl \(3, 4\)",
        import_diffmm,
        src,
        tmp_path / "o4",
    )

    _pickles(src, good)
    (src / "trnMat.pkl").write_bytes(b"this is not a pickle")
    _raises(src / "trnMat.pkl", "not a readable pickle", import_diffmm, src, tmp_path / "o5")

    _pickles(src, good)
    (src / "valMat.pkl").unlink()
    _raises(src / "valMat.pkl", "--val-file", import_diffmm, src, tmp_path / "o6")
    _raises(src / "nope.pkl", "missing file", import_diffmm, src, tmp_path / "o6", val_file="nope.pkl")
    assert not any(p.name.startswith("o") for p in tmp_path.iterdir())


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_malicious_pickle_is_refused(tmp_path):
    src = tmp_path / "src"
    marker = tmp_path / "pwned"
    _pickles(src, [_Evil(marker), _coo([1], [1]), _coo([2], [2])])
    message = _raises(src / "trnMat.pkl", "refused to load global", import_diffmm, src, tmp_path / "out")
    assert "untrusted" in message
    assert not marker.exists()


def test_bad_feature_rows(tmp_path):
    src = _mmrec_dir(tmp_path)
    np.save(src / "image_feat.npy", np.zeros((4, 3)))
    _raises(src / "image_feat.npy", "feature rows 4 != 5 items", import_mmrec, src, tmp_path / "out")
    np.save(src / "image_feat.npy", np.array(["a"] * 5, dtype=object), allow_pickle=True)
    _raises(src / "image_feat.npy", "not a plain .npy array", import_mmrec, src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("rows", "header", "line", "match"),
    [
        (["0\t0\t5.0\t100"], INTER_HEADER, 2, "expected 5 tab-separated fields, found 4"),
        (
            ["0\t0\t5.0\t100\t0", "x1\t0\t5.0\t100\t0"],
            INTER_HEADER,
            3,
            "userID 'x1' is not a non-negative integer",
        ),
        (["0\t0\t5.0\t100\t3"], INTER_HEADER, 2, "x_label 3 is not 0, 1 or 2"),
        (["0\t0\tgood\t100\t0"], INTER_HEADER, 2, "rating 'good' is not a number"),
        (
            ["0\t0\t5\t100\t0"],
            "user\titem\trating\ttimestamp\tx_label",
            1,
            "header has no column userID, itemID",
        ),
        (
            ["0\t9\t5\t100\t0"],
            INTER_HEADER,
            None,
            r"item id 9 out of range 0\.\.4 \(i_id_mapping.csv has 5 items\)",
        ),
    ],
)
def test_bad_inter_lines(tmp_path, rows, header, line, match):
    src = _mmrec_dir(tmp_path, features=False)
    _write_inter(src / "toy.inter", rows, header=header)
    where = src / "toy.inter" if line is None else f"{src / 'toy.inter'}:{line}:"
    _raises(where, match, import_mmrec, src, tmp_path / "out")


def test_bad_id_maps(tmp_path):
    src = _mmrec_dir(tmp_path, features=False)
    (src / "u_id_mapping.csv").write_text("user_id\tuserID\nuA\t0\nuA\t1\nuC\t2\nuD\t3\n")
    _raises(src / "u_id_mapping.csv", "raw user ids are not unique", import_mmrec, src, tmp_path / "out")
    (src / "u_id_mapping.csv").write_text("user_id\tuserID\nuA\t0\nuB\t1\nuC\t7\nuD\t3\n")
    _raises(src / "u_id_mapping.csv", "user id 7 out of range 0..3", import_mmrec, src, tmp_path / "out")


def _lattice_dir(tmp_path, train, val=None, test=None, item2id=None):
    src = tmp_path / "lat"
    (src / "5-core").mkdir(parents=True, exist_ok=True)
    for name, obj in (("train", train), ("val", val or {}), ("test", test or {})):
        (src / "5-core" / f"{name}.json").write_text(json.dumps(obj))
    if item2id is not None:
        (src / "item2id.json").write_text(json.dumps(item2id))
    return src


def test_bad_lattice_inputs(tmp_path):
    src = _lattice_dir(tmp_path, [[0, 1]])
    train = src / "5-core" / "train.json"
    _raises(train, "expected a JSON object", import_lattice, src, tmp_path / "out")
    _lattice_dir(tmp_path, {"0": [0, 1], "1": 5})
    _raises(train, "user '1': expected a list of item ids, found int", import_lattice, src, tmp_path / "out")
    _lattice_dir(tmp_path, {"0": [0, "B0001"]})
    _raises(train, "item ids must be integers, found 'B0001'", import_lattice, src, tmp_path / "out")
    _lattice_dir(tmp_path, {"u0": [0]})
    _raises(train, "user key 'u0' is not an integer id", import_lattice, src, tmp_path / "out")
    _lattice_dir(tmp_path, {"0": [0, 2]}, item2id={"a": 0, "b": 1})
    _raises(
        train,
        r"item id 2 out of range 0\.\.1 \(item2id.json has 2 items\)",
        import_lattice,
        src,
        tmp_path / "o",
    )
    train.write_text('{"0": [0, 1]')
    _raises(f"{train}:1:", "invalid JSON", import_lattice, src, tmp_path / "out")
    (src / "5-core" / "val.json").unlink()
    train.unlink()
    _raises(src / "train.json", "missing file", import_lattice, src, tmp_path / "out")


def test_lattice_small_without_maps(tmp_path):
    src = _lattice_dir(tmp_path, {"0": [0, 1], "2": [3, 3]}, val={"1": [1]}, test={"0": [2]})
    ds = load_dataset(import_lattice(src, tmp_path / "out"))
    assert (ds.n_users, ds.n_items) == (3, 4)
    assert ds.name == "lat"
    assert ds.manifest["splits"]["warm"]["counts"] == {"train": 3, "val": 1, "test": 1}
    assert ds.manifest["skipped"]["counts"] == {"duplicates": 1}
    assert ds.manifest["splits"]["warm"]["violations"]["users_without_train"] == 1
    assert ds.manifest["splits"]["warm"]["violations"]["items_only_in_eval"] == 1


# ---------------------------------------------------------------------------------------------------- CLI


def test_cli_import_export_and_errors(tmp_path):
    from mmprep.cli import main

    runner = CliRunner()
    src = _mmrec_dir(tmp_path)
    result = runner.invoke(main, ["import", "--format", "mmrec", str(src), "--out", str(tmp_path / "ds")])
    assert result.exit_code == 0, result.output
    assert "4 users x 5 items" in result.stderr
    assert "users_without_train 1" in result.stderr
    result = runner.invoke(
        main, ["export", "--format", "diffmm", str(tmp_path / "ds"), "--out", str(tmp_path / "dm")]
    )
    assert result.exit_code == 0, result.output
    assert load_pickle(tmp_path / "dm" / "trnMat.pkl").nnz == 4
    result = runner.invoke(
        main, ["import", "--format", "diffmm", str(tmp_path / "dm"), "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 0, result.output
    assert load_dataset(tmp_path / "x").manifest["counts"]["interactions"] == 8

    (tmp_path / "dm" / "tstMat.pkl").unlink()
    result = runner.invoke(
        main, ["import", "--format", "diffmm", str(tmp_path / "dm"), "--out", str(tmp_path / "y")]
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == f"mmprep: error: {tmp_path / 'dm' / 'tstMat.pkl'}: missing file"
    assert not (tmp_path / "y").exists()

    result = runner.invoke(
        main, ["import", "--format", "lattice", str(src), "--out", str(tmp_path / "z"), "--val-file", "v.pkl"]
    )
    assert result.exit_code == 2 and "--val-file only applies to --format diffmm" in result.stderr

    for command in ("import", "export"):
        result = runner.invoke(main, [command, "--help"])
        assert (
            result.exit_code == 0
            and "Examples:" in result.output
            and f"mmprep {command} --format" in result.output
        )
