"""A damaged gzip file is an error in every reader path, never a silently different dataset (issue 13)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from mmprep.sources import fastjson
from mmprep.sources.amazon2014 import FIELDS
from mmprep.sources.amazon_common import read_review_file
from mmprep.sources.base import SkipLog
from mmprep.sources.netflix import duckdb_session
from tests.mmprep.oneline import one_line_error, run_cli
from tests.paths import REPO, SHARED_DATA

SAMPLE = REPO / "data" / "All_Beauty_5.json.gz"


def _damaged(tmp_path: Path, data: bytes, how: str, name: str) -> Path:
    """``data`` with its CRC trailer flipped, a byte flipped inside the deflate stream, or cut in half."""
    b = bytearray(data)
    if how == "crc":
        b[-8] ^= 0xFF
    elif how == "deflate":
        b[len(b) // 2] ^= 0x01
    else:
        b = b[: len(b) // 2]
    path = tmp_path / name
    path.write_bytes(bytes(b))
    return path


@pytest.mark.parametrize(
    ("how", "problem"),
    [("crc", "CRC check failed"), ("deflate", "corrupt compressed data"), ("truncated", "truncated gzip")],
)
def test_damaged_review_gzip_fails_the_build(tmp_path, how, problem):
    bad = _damaged(tmp_path, SAMPLE.read_bytes(), how, "All_Beauty_5.json.gz")
    result = run_cli(
        "build", "--source", "amazon2018", "--input", f"interactions={bad}", "--out", tmp_path / "o"
    )
    line = one_line_error(result, str(bad), problem)
    assert f"{bad}:" in line  # with a line number
    assert not (tmp_path / "o").exists()


def test_bad_crc_is_an_error_in_the_exact_path_too(tmp_path):
    """The whole-file DuckDB read (the fallback) does not check the CRC by itself."""
    bad = _damaged(tmp_path, SAMPLE.read_bytes(), "crc", "b.json.gz")
    with duckdb_session() as con, pytest.raises(Exception, match="CRC check failed"):
        read_review_file(con, bad, FIELDS, SkipLog(), fast=False)
    if fastjson.FAST_INFLATE:
        with duckdb_session() as con, pytest.raises(Exception, match="CRC check failed"):
            read_review_file(con, bad, FIELDS, SkipLog(), fast=True)


def test_bad_crc_of_a_meta_file_fails(tmp_path):
    meta = _damaged(tmp_path, gzip.compress(b'{"asin": "B00", "title": "t"}\n' * 20), "crc", "meta.json.gz")
    result = run_cli(
        "build", "--source", "amazon2018", "--input", f"interactions={SAMPLE}", "--input", f"meta={meta}",
        "--item-text", "meta", "--out", tmp_path / "o", "--quiet",
    )  # fmt: skip
    one_line_error(result, str(meta), "CRC check failed")


def test_bad_crc_fails_movielens_and_netflix(tmp_path):
    if not (SHARED_DATA / "movielens-100k").is_dir():
        pytest.skip("../shared/data is not available")
    ratings = (SHARED_DATA / "movielens-100k" / "u.data").read_bytes()
    ml = _damaged(tmp_path, gzip.compress(ratings), "crc", "u.data.gz")
    result = run_cli(
        "build", "--source", "movielens", "--input", f"interactions={ml}", "--out", tmp_path / "a"
    )
    one_line_error(result, f"{ml}:100002", "CRC check failed")
    nf_text = b"1:\n1488844,3,2005-09-06\n822109,5,2005-05-13\n2:\n1488844,4,2005-09-06\n"
    nf = _damaged(tmp_path, gzip.compress(nf_text), "crc", "combined_data_1.txt.gz")
    result = run_cli("build", "--source", "netflix", "--input", f"interactions={nf}", "--out", tmp_path / "b")
    one_line_error(result, str(nf), "CRC check failed")
