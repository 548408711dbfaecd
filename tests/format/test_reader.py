"""One reader, one set of rules: ``mmprep verify`` and mmtrain's loader accept and refuse the same directories."""

from __future__ import annotations

import json
import re
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from mmformat.errors import FormatError
from mmprep.cli import main as mmprep_main
from mmtrain.data import DatasetDir, load_data
from tests.format.helpers import write_small


def _verify(root) -> tuple[int, list[str]]:
    result = CliRunner().invoke(mmprep_main, ["verify", str(root)])
    assert "Traceback" not in result.output
    return result.exit_code, result.output.strip().splitlines()


def _set_manifest(root, **changes) -> None:
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            manifest[section][field] = value
        else:
            manifest[section] = value
    path.write_text(json.dumps(manifest))


@pytest.fixture
def small(tmp_path):
    root = tmp_path / "small"
    write_small(root)
    return root


def test_valid_dataset_passes_both(small):
    assert _verify(small) == (0, [f"{small}: valid (format_version 1)"])
    data = load_data(small)
    assert data.modalities() == ["image"] and data.feature("image").shape == (4, 2)


def test_nan_features_are_refused_by_both_naming_the_row(tmp_path):
    image = np.arange(8, dtype=np.float32).reshape(4, 2)
    image[3, 1] = np.nan
    image[2, 0] = np.inf  # row 2 comes first
    root = tmp_path / "nan"
    write_small(root, image=image)
    code, lines = _verify(root)
    assert code == 1 and lines == [
        f"{root}: features/image.npy: row 2 (item_idx 2) holds NaN or infinite values"
    ]
    with pytest.raises(FormatError, match=r"features/image.npy: row 2 \(item_idx 2\) holds NaN or infinite"):
        load_data(root).feature("image")


def test_manifest_is_the_truth_about_modalities(small):
    (small / "features" / "text.npy").write_bytes((small / "features" / "image.npy").read_bytes())
    code, lines = _verify(small)
    assert code == 1 and lines == [
        f"{small}: features/text.npy: on disk but not listed in manifest",
        f"{small}: features/text.npy: on disk but not in manifest.features",
    ]
    with pytest.raises(
        FormatError, match=r"^\S+/small: features/text.npy: on disk but not in manifest.features$"
    ):
        DatasetDir(small)
    (small / "features" / "text.npy").unlink()
    for name in ("image.npy", "image.mask.npy"):
        (small / "features" / name).unlink()
    code, lines = _verify(small)
    assert code == 1 and f"{small}: features/image.npy: listed in manifest.features but missing" in lines
    assert f"{small}: features/image.npy: listed in manifest but missing" in lines
    with pytest.raises(FormatError, match="features/image.npy: listed in manifest.features but missing"):
        DatasetDir(small)


def test_index_out_of_range_and_wrong_schema_same_line_in_both(small):
    table = pq.read_table(small / "splits" / "test.parquet")
    table = table.set_column(1, "item_idx", pa.array([9], pa.int32()))
    pq.write_table(table, small / "splits" / "test.parquet")
    code, lines = _verify(small)
    assert code == 1 and f"{small}: splits/test.parquet:1: item_idx 9 out of range [0, 4)" in lines
    with pytest.raises(FormatError, match=r"splits/test.parquet:1: item_idx 9 out of range \[0, 4\)$"):
        load_data(small)
    table = pq.read_table(small / "splits" / "val.parquet")
    pq.write_table(
        table.set_column(0, "user_idx", table.column(0).cast(pa.int64())), small / "splits" / "val.parquet"
    )
    code, lines = _verify(small)
    assert f"{small}: splits/val.parquet: column user_idx is int64, expected int32" in lines
    with pytest.raises(FormatError, match="splits/val.parquet: column user_idx is int64, expected int32"):
        load_data(small)


@pytest.mark.parametrize(
    ("users", "shown"),
    [
        (1e11, "100000000000.0"),
        (10**11, "100000000000"),
        (-3, "-3"),
        ("3", "'3'"),
        (True, "True"),
        (None, "None"),
    ],
)
def test_hostile_counts_are_refused_in_one_line(small, users, shown):
    _set_manifest(small, counts__users=users)
    expected = f"{small}/manifest.json: counts.users is {shown}: expected an integer in [1, 2147483647]"
    with pytest.raises(FormatError) as err:
        DatasetDir(small)
    assert str(err.value) == expected
    result = CliRunner().invoke(mmprep_main, ["verify", str(small)])
    assert result.exit_code == 2 and result.output == f"mmprep: error: {expected}\n"


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ("x", "files missing or not a list"),
        ([{"path": "../../etc/passwd", "bytes": 1, "sha256": "0" * 64}], "is not a relative path inside"),
        ([{"path": "users.parquet", "bytes": -1, "sha256": "0" * 64}], "bytes -1 is not a non-negative"),
        ([{"path": "users.parquet", "bytes": 1, "sha256": "zz"}], "sha256 'zz' is not 64 hex digits"),
    ],
)
def test_hostile_file_lists_are_refused(small, files, problem):
    _set_manifest(small, files=files)
    with pytest.raises(FormatError, match=problem):
        DatasetDir(small)


@pytest.mark.parametrize(
    ("shape", "problem"),
    [
        (
            (4, 10**9),
            r"header claims shape \(4, 1000000000\) of float32 \(16000000000 bytes\) but the file holds 32",
        ),
        ((4, 10**12), r"shape \(4, 1000000000000\) out of range"),
        ((10**10, 2), r"shape \(10000000000, 2\) out of range"),
    ],
)
def test_npy_header_claiming_a_huge_shape_is_refused_before_allocating(small, shape, problem):
    path = small / "features" / "image.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
        f.write(b"\0" * 32)
    ds = DatasetDir(small)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=f"features/image.npy: {problem}$"):
            ds.feature("image")
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        tracemalloc.stop()
    code, lines = _verify(small)
    assert code == 1 and any(re.search(f"features/image.npy: {problem}$", line) for line in lines)
