"""The fast read of gzip review files (inflate on a thread, DuckDB parses plain blocks) against the exact
whole-file DuckDB read: identical tables on a realistic dump, multi-member gzip, missing rating/time, and the
same skips and errors on bad input."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

import mmprep.sources.amazon_common as ac
import mmprep.sources.fastjson as fj
from benchmarks._generate import generate
from mmprep.errors import PrepError
from mmprep.filter.kcore import dedupe_first, kcore
from mmprep.sources.amazon2014 import FIELDS
from mmprep.sources.base import SkipLog
from mmprep.sources.netflix import duckdb_session

SMALL_BLOCK = 256 * 1024


def _record(user, item, rating=None, time=None) -> bytes:
    """One review as its own gzip member."""
    rec = {"reviewerID": user, "asin": item, "reviewText": "fine"}
    if rating is not None:
        rec["overall"] = rating
    if time is not None:
        rec["unixReviewTime"] = time
    return gzip.compress((json.dumps(rec) + "\n").encode())


def _read(path, fast: bool, skips: SkipLog | None = None) -> pa.Table:
    with duckdb_session() as con:
        return ac.read_review_file(con, path, FIELDS, skips or SkipLog(), fast=fast)


def _exact(path) -> pa.Table:
    """The whole-file DuckDB read (the reference)."""
    return _read(path, fast=False)


class _Declined(Exception):
    pass


def _fast(path) -> pa.Table | None:
    """The fast path alone (``None``: it declined the file, which the exact read would then take)."""
    real = ac._read_json_blocks

    def fast_only(con, path, columns, select):
        table = real(con, path, columns, select)
        if table is None:
            raise _Declined
        return table

    ac._read_json_blocks = fast_only
    try:
        return _read(path, fast=True)
    except _Declined:
        return None
    finally:
        ac._read_json_blocks = real


@pytest.fixture()
def small_blocks(monkeypatch):
    monkeypatch.setattr(fj, "FAST_INFLATE", True)  # with stdlib gzip when isal is not installed
    monkeypatch.setattr(fj, "BLOCK_BYTES", SMALL_BLOCK)
    monkeypatch.setattr(fj, "_READ_BYTES", SMALL_BLOCK // 16)


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    path = tmp_path_factory.mktemp("dump") / "reviews_Synthetic_5.json.gz"
    rows, raw_bytes = generate(path, 20_000, seed=7, progress=False)
    assert rows == 20_000 and raw_bytes > 20 * SMALL_BLOCK  # many blocks at SMALL_BLOCK
    return path


def test_realistic_dump_fast_equals_exact_over_many_blocks(dump, small_blocks):
    fast = _fast(dump)
    assert fast is not None and fast.num_rows == 20_000
    assert fast.equals(_exact(dump))
    skips = SkipLog()
    table = ac.read_review_interactions([dump], FIELDS, skips)
    assert table.equals(fast) and skips.counts == {}


def test_blocks_end_at_line_ends_and_rebuild_the_stream(dump, small_blocks):
    whole = gzip.decompress(dump.read_bytes())
    for opener in (gzip.open, None):  # stdlib and (when installed) isal
        with fj.inflated_blocks(dump, opener=opener) as blocks:
            parts = [b.read_bytes() for b in blocks]
        assert len(parts) > 20
        assert all(p.endswith(b"\n") for p in parts)
        assert b"".join(parts) == whole


def test_block_files_are_a_ring_overwritten_in_place(dump, small_blocks):
    """Many blocks pass through the same few files (a fresh /dev/shm file per block costs the kernel new
    pages, reclaimed from the page cache once a dump larger than RAM fills it); each still reads right."""
    whole = gzip.decompress(dump.read_bytes())
    paths, parts, inodes = [], [], set()
    with fj.inflated_blocks(dump) as blocks:
        for block in blocks:
            paths.append(block)
            inodes.add(block.stat().st_ino)
            parts.append(block.read_bytes())
            assert len(list(block.parent.iterdir())) <= fj._RING_FILES
    assert len(parts) > 20 and b"".join(parts) == whole
    assert len(set(paths)) == len(inodes) == fj._RING_FILES
    # a long block followed by a short one in the same file: the file is cut to the short one
    assert any(len(a) > len(b) for a, b in zip(parts, parts[fj._RING_FILES :], strict=False))


def test_multi_member_gzip_with_missing_rating_and_time(tmp_path, small_blocks):
    path = tmp_path / "reviews_x.json.gz"
    path.write_bytes(
        _record("U1", "I1", 5.0, 1400000000)
        + _record("U2", "0000007919", None, 1300000000.5)
        + _record("U3", "I1", 4.5, None)
        + _record("U1", "I2", 3)
    )
    fast = _fast(path)
    assert fast is not None
    assert fast.to_pylist() == [
        {"user_id": "U1", "item_id": "I1", "rating": 5.0, "timestamp": 1400000000},
        {"user_id": "U2", "item_id": "0000007919", "rating": None, "timestamp": 1300000000},
        {"user_id": "U3", "item_id": "I1", "rating": 4.5, "timestamp": -1},
        {"user_id": "U1", "item_id": "I2", "rating": 3.0, "timestamp": -1},
    ]
    assert fast.equals(_exact(path))


def test_bad_line_falls_back_to_the_exact_read_with_its_line_number(tmp_path, small_blocks):
    lines = [
        f'{{"reviewerID": "U{n}", "asin": "I{n % 7}", "overall": 4, "unixReviewTime": {n}}}' for n in range(9)
    ]
    lines[5] = '{"reviewerID": "U5", "overall": 4}'
    lines[7] = "{not json"
    path = tmp_path / "reviews_bad.json.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    assert _fast(path) is None
    skips = SkipLog()
    table = ac.read_review_interactions([path], FIELDS, skips)
    assert table.column("user_id").to_pylist() == ["U0", "U1", "U2", "U3", "U4", "U6", "U8"]
    assert skips.counts == {"bad_lines": 2}
    with pytest.raises(PrepError, match=r":6: missing field asin"):
        ac.read_review_interactions([path], FIELDS, SkipLog(strict=True))


def test_truncated_stream_is_the_located_error_of_the_exact_read(dump, tmp_path, small_blocks):
    """No fallback to DuckDB's own gzip read, which would not check the stream: the same located error."""
    path = tmp_path / "reviews_cut.json.gz"
    path.write_bytes(dump.read_bytes()[:300_000])
    with pytest.raises(PrepError, match="truncated gzip stream") as fast:
        _fast(path)
    with pytest.raises(PrepError) as exact:
        ac.read_review_interactions([path], FIELDS, SkipLog())
    assert str(fast.value) == str(exact.value) and fast.value.line is not None


def test_plain_file_uses_the_exact_read(tmp_path):
    path = tmp_path / "reviews_plain.json"
    path.write_bytes(b'{"reviewerID": "U1", "asin": "I1", "overall": 2, "unixReviewTime": 7}\n')
    assert _fast(path) is None
    table = ac.read_review_interactions([path], FIELDS, SkipLog())
    assert table.to_pylist() == [{"user_id": "U1", "item_id": "I1", "rating": 2.0, "timestamp": 7}]


def test_leaving_early_stops_the_thread_and_removes_the_blocks(dump, tmp_path, monkeypatch, small_blocks):
    monkeypatch.setattr(fj, "_scratch_dir", lambda block_bytes: str(tmp_path))
    with fj.inflated_blocks(dump) as blocks:
        first = next(blocks)
        assert first.is_file() and first.parent.parent == tmp_path
    assert list(tmp_path.iterdir()) == []


def test_block_folders_of_killed_runs_are_removed_by_the_next_run(dump, tmp_path, monkeypatch, small_blocks):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process now
    orphan = tmp_path / f"mmprep-inflate-{dead.pid}-abc"
    live = tmp_path / f"mmprep-inflate-{os.getpid()}-def"  # a concurrent run of a live process
    other = tmp_path / "mmprep-inflate-x-ghi"  # not a pid: not ours to judge
    for folder in (orphan, live, other):
        folder.mkdir()
        (folder / "block000000.json").write_bytes(b"{}\n")
    monkeypatch.setattr(fj, "_scratch_dir", lambda block_bytes: str(tmp_path))
    with fj.inflated_blocks(dump) as blocks:
        own = next(blocks).parent
        assert own.name.startswith(f"mmprep-inflate-{os.getpid()}-")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, own.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


def _reference_dedupe(users, items):
    seen, keep = set(), []
    for r, pair in enumerate(zip(users.tolist(), items.tolist(), strict=True)):
        if pair not in seen:
            seen.add(pair)
            keep.append(r)
    return np.array(keep, dtype=np.int64)


def _reference_kcore(users, items, k_user, k_item):
    keep = np.ones(len(users), dtype=bool)
    iterations, removed = 0, []
    while True:
        idx = np.flatnonzero(keep)
        u_deg = np.bincount(users[idx], minlength=users.max() + 1)
        i_deg = np.bincount(items[idx], minlength=items.max() + 1)
        bad = (u_deg[users[idx]] < k_user) | (i_deg[items[idx]] < k_item)
        iterations += 1
        if not bad.any():
            return keep, iterations, removed
        keep[idx[bad]] = False
        removed.append(int(bad.sum()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dedupe_and_kcore_match_plain_reference(seed):
    rng = np.random.default_rng(seed)
    users = (rng.pareto(1.2, 5000) * 3).astype(np.int64) % 400
    items = (rng.pareto(1.2, 5000) * 3).astype(np.int64) % 300
    first = dedupe_first(users, items, int(items.max()) + 1)
    expected = _reference_dedupe(users, items)
    assert len(expected) < 5000 and np.array_equal(first, expected)
    core = kcore(users[first], items[first], 3, 4)
    keep, iterations, removed = _reference_kcore(users[first], items[first], 3, 4)
    assert 0 < keep.sum() < len(first) and iterations > 2
    assert np.array_equal(core.keep, keep)
    assert (core.iterations, core.removed_per_iteration) == (iterations, removed)


def test_without_isal_every_file_takes_the_exact_read(dump, monkeypatch):
    monkeypatch.setattr(fj, "FAST_INFLATE", False)
    assert _fast(dump) is None
    assert ac.read_review_interactions([dump], FIELDS, SkipLog()).num_rows == 20_000
