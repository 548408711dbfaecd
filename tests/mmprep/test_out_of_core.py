"""Out-of-core reading (issue 16): the stream of blocks encoded batch by batch with rating/timestamp on disk
gives the same codes, the same dataset bytes and leaves nothing behind, even when the build is killed."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import mmprep.filter.collect as collect_mod
import mmprep.filter.kcore as kcore_mod
import mmprep.sources.fastjson as fj
from benchmarks._generate import generate
from mmformat.atomic import write_parquet, write_parquet_tables
from mmformat.layout import INTERACTION_SCHEMA
from mmprep.dataset.writer import ROW_GROUP_ROWS, interaction_pieces, interactions_table, user_item_order
from mmprep.filter.collect import collect
from mmprep.filter.columns import ColumnSink
from mmprep.filter.encode import encode_first_appearance
from mmprep.filter.kcore import compact, dedupe_first, first_occurrence_mask, kcore, kcore_compact, shrink
from mmprep.sources import spill
from mmprep.sources.amazon2014 import FIELDS
from mmprep.sources.amazon_common import read_review_interactions, review_stream
from mmprep.sources.base import SkipLog, StreamEvent
from mmprep.sources.netflix import duckdb_session
from tests.mmprep.oneline import one_line_error, run_cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL_BLOCK = 256 * 1024


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    path = tmp_path_factory.mktemp("dump") / "reviews_Synthetic_5.json.gz"
    generate(path, 40_000, seed=11, progress=False)
    return path


@pytest.fixture()
def small_blocks(monkeypatch):
    monkeypatch.setattr(fj, "FAST_INFLATE", True)
    monkeypatch.setattr(fj, "BLOCK_BYTES", SMALL_BLOCK)
    monkeypatch.setattr(fj, "_READ_BYTES", SMALL_BLOCK // 16)


@pytest.mark.parametrize("on_disk", [False, True])
def test_column_sink_takes_rows_across_slices_and_truncates(tmp_path, monkeypatch, on_disk):
    monkeypatch.setattr("mmprep.filter.columns.TAKE_ROWS", 1_000)
    sink = ColumnSink(np.int64, "timestamp", tmp_path if on_disk else None)
    values = np.arange(10_500, dtype=np.int64) * 7
    for lo in range(0, 10_500, 3_000):
        sink.append(values[lo : lo + 3_000])
    sink.truncate(9_000)
    sink.append(values[9_000:])
    rows = np.array([0, 1, 999, 1_000, 4_321, 9_000, 10_499])
    assert np.array_equal(sink.take(rows), values[rows])
    assert (tmp_path / "timestamp.bin").is_file() == on_disk
    sink.close()
    assert list(tmp_path.iterdir()) == []


def test_stream_in_small_batches_equals_the_whole_table(dump, tmp_path, small_blocks):
    whole = read_review_interactions([dump], FIELDS, SkipLog())
    codes_u, vocab_u = encode_first_appearance(whole.column("user_id"))
    codes_i, vocab_i = encode_first_appearance(whole.column("item_id"))
    with duckdb_session() as con:
        stream = list(review_stream(con, dump, FIELDS, SkipLog()))
    tables = [t for t in stream if isinstance(t, pa.Table)]
    assert stream[0] is StreamEvent.FILE_START and len(tables) > 20  # many blocks
    got = collect(stream, tmp_path, batch_bytes=64 * 1024)  # dozens of batches
    try:
        assert np.array_equal(got.u_codes, codes_u) and np.array_equal(got.i_codes, codes_i)
        assert got.u_vocab.ids().combine_chunks().equals(
            vocab_u
        ) and got.i_vocab.ids().combine_chunks().equals(vocab_i)
        rows = np.arange(0, whole.num_rows, 3)
        expected_rating = whole.column("rating").to_numpy()[rows]
        assert np.array_equal(got.rating.take(rows), expected_rating)
        assert np.array_equal(got.timestamp.take(rows), whole.column("timestamp").to_numpy()[rows])
        assert sorted(p.name for p in tmp_path.iterdir()) == ["rating.bin", "timestamp.bin"]
    finally:
        got.close()
    assert list(tmp_path.iterdir()) == []


def test_a_bad_record_late_in_the_file_rewinds_to_the_exact_read(dump, tmp_path, small_blocks):
    """The fast read yields blocks, meets a bad record near the end, rewinds; the codes are those of the exact
    read, which skipped that record."""
    lines = gzip.decompress(dump.read_bytes()).splitlines(keepends=True)
    bad_line = len(lines) - 50
    lines[bad_line] = b'{"reviewerID": "A1", "overall": 5.0}\n'  # no asin
    path = tmp_path / "reviews_bad.json.gz"
    path.write_bytes(gzip.compress(b"".join(lines)))
    skips = SkipLog()
    with duckdb_session() as con:
        stream = list(review_stream(con, path, FIELDS, skips))
    assert StreamEvent.REWIND in stream and stream.index(StreamEvent.REWIND) > 20
    assert skips.counts == {"bad_lines": 1}
    exact = read_review_interactions([path], FIELDS, SkipLog())
    assert exact.num_rows == len(lines) - 1
    got = collect(stream, None, batch_bytes=64 * 1024)
    expected, _ = encode_first_appearance(exact.column("user_id"))
    assert np.array_equal(got.u_codes, expected) and got.rows == exact.num_rows


@pytest.mark.parametrize("workers", [1, 2])
def test_partitioned_dedupe_equals_one_sort(monkeypatch, workers):
    rng = np.random.default_rng(5)
    users = (rng.pareto(1.2, 50_000) * 4).astype(np.int32) % 3_000
    items = (rng.pareto(1.2, 50_000) * 4).astype(np.int32) % 2_000
    whole = dedupe_first(users, items, 2_000)
    assert len(whole) < 45_000  # many repeated pairs
    # the first row of every pair, the plain way
    reference = np.sort(np.unique(users.astype(np.int64) * 2_000 + items, return_index=True)[1])
    assert np.array_equal(whole, reference)
    monkeypatch.setattr(kcore_mod, "DEDUPE_PARTS_ROWS", 4_000)  # 13 parts
    threads = set()
    real = kcore_mod._DedupeBuffers.clear_repeats
    both_started = threading.Barrier(workers, timeout=30)

    def spying(self, *args):
        if threading.get_ident() not in threads:  # each worker's first part waits until all have one
            threads.add(threading.get_ident())
            both_started.wait()
        return real(self, *args)

    monkeypatch.setattr(kcore_mod._DedupeBuffers, "clear_repeats", spying)
    got = first_occurrence_mask(users, items, 2_000, workers=workers)
    assert np.array_equal(np.flatnonzero(got), whole)
    # with two workers the parts are shared by two pool threads (never run here, on the caller's thread)
    assert len(threads) == workers and (workers == 1) == (threads == {threading.get_ident()})


def test_dedupe_is_exact_when_every_row_shares_the_low_key_bits():
    # items 2**24 apart give pair keys with the same low 24 bits: the bitmap flags every row, also those of pairs
    # that do not repeat, and those must stay
    rng = np.random.default_rng(9)
    users = rng.integers(0, 40, 5_000).astype(np.int64)
    items = (rng.integers(0, 3, 5_000) << 24) + rng.integers(0, 2, 5_000)
    n_items = 3 << 24
    reference = np.sort(np.unique(users * n_items + items, return_index=True)[1])
    assert len(reference) < 5_000
    assert np.array_equal(dedupe_first(users, items, n_items), reference)


def test_in_place_compaction_equals_boolean_indexing(monkeypatch):
    rng = np.random.default_rng(6)
    monkeypatch.setattr(kcore_mod, "COMPACT_CHUNK_ROWS", 1_000)  # 70 chunks, each written over earlier ones
    values = rng.integers(0, 1_000_000, 70_000).astype(np.int32)
    mask = rng.random(70_000) < 0.3
    a, b = values.copy(), np.arange(70_000)
    m = compact(mask, a, b)
    assert (
        m == mask.sum()
        and np.array_equal(a[:m], values[mask])
        and np.array_equal(b[:m], np.flatnonzero(mask))
    )
    owned = shrink(a, m)
    assert owned is a and len(a) == m and np.array_equal(a, values[mask])  # resized in place, same values
    view = shrink(values[10:], 5)
    assert view.flags.owndata and np.array_equal(view, values[10:15])


def _reference_kcore(users, items, k_user, k_item):
    """The k-core the slow, obvious way: count again and drop rows below k with boolean indexing until nothing
    changes; returns the surviving row indices and the rows each pass removed."""
    idx, removed = np.arange(len(users)), []
    while True:
        u, i = users[idx], items[idx]
        ok = (np.bincount(u)[u] >= k_user) & (np.bincount(i)[i] >= k_item)
        if ok.all():
            return idx, removed
        removed.append(int((~ok).sum()))
        idx = idx[ok]


def test_kcore_on_compacted_arrays_keeps_the_same_rows(monkeypatch):
    rng = np.random.default_rng(7)
    monkeypatch.setattr(kcore_mod, "COMPACT_CHUNK_ROWS", 777)
    users = rng.integers(0, 5_000, 40_000).astype(np.int32)  # ~8 rows a user, ~8 an item: a long cascade
    items = rng.integers(0, 5_000, 40_000).astype(np.int32)
    result = kcore(users, items, 5, 5)
    keep = result.keep
    assert result.iterations >= 5 and 0 < keep.sum() < len(keep) - 3_000
    idx, _ = _reference_kcore(users, items, 5, 5)
    assert np.array_equal(np.flatnonzero(keep), idx)
    u, i, rows = users.copy(), items.copy(), np.arange(len(users), dtype=np.int32)
    m, iterations, _ = kcore_compact(u, i, rows, 5, 5)
    assert iterations == result.iterations
    assert (
        np.array_equal(rows[:m], idx)
        and np.array_equal(u[:m], users[idx])
        and np.array_equal(i[:m], items[idx])
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_kcore_renumbers_sparse_codes_and_hands_back_the_input_codes(monkeypatch, workers):
    rng = np.random.default_rng(8)
    monkeypatch.setattr(kcore_mod, "COMPACT_CHUNK_ROWS", 999)
    # a core of 400 users x 300 items inside 60,000 users and 50,000 items that mostly occur once: after the
    # first pass fewer than half of the codes of either side can survive, so both are renumbered
    core_u, core_i = rng.integers(0, 400, 30_000) * 150, rng.integers(0, 300, 30_000) * 160
    users = np.concatenate([core_u, rng.integers(0, 60_000, 20_000)]).astype(np.int32)
    items = np.concatenate([core_i, rng.integers(0, 50_000, 20_000)]).astype(np.int32)
    perm = rng.permutation(len(users))
    users, items = users[perm], items[perm]
    renumbered = {"user": [], "item": []}  # per side: (code range before, after) of every pass
    real = kcore_mod._renumber_if_sparse
    idx, _ = _reference_kcore(users, items, 5, 5)
    u, i, rows = users.copy(), items.copy(), np.arange(len(users), dtype=np.int32)

    def spying(codes, alive, back, size, degree):
        back, new_size, degree = real(codes, alive, back, size, degree)
        renumbered["user" if codes.base is u else "item"].append((size, new_size))
        return back, new_size, degree

    monkeypatch.setattr(kcore_mod, "_renumber_if_sparse", spying)
    m, _, _ = kcore_compact(u, i, rows, 5, 5, workers=workers)
    # the first pass renumbers both sides: the next passes count over the few hundred codes left
    (u_before, u_after), (i_before, i_after) = renumbered["user"][0], renumbered["item"][0]
    assert (u_before, i_before) == (int(users.max()) + 1, int(items.max()) + 1)
    assert 400 <= u_after < 1_000 and 300 <= i_after < 1_000
    assert (
        np.array_equal(rows[:m], idx)
        and np.array_equal(u[:m], users[idx])
        and np.array_equal(i[:m], items[idx])
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_kcore_counts_kept_across_passes_give_the_reference_passes(workers):
    """The per-code counts are carried from pass to pass (removed rows subtracted when they are under a quarter
    of the rows, else counted again): every pass removes exactly the rows the recounting reference removes."""
    rng = np.random.default_rng(21)
    # a sparse periphery that peels away over many passes (the first ones large, the later ones small) around
    # a dense core of 200 users x 150 items that stays
    users = np.concatenate([rng.integers(0, 15_000, 60_000), 15_000 + rng.integers(0, 200, 8_000)])
    items = np.concatenate([rng.integers(0, 6_000, 60_000), 6_000 + rng.integers(0, 150, 8_000)])
    perm = rng.permutation(len(users))
    users, items = users[perm].astype(np.int32), items[perm].astype(np.int32)
    idx, ref_removed = _reference_kcore(users, items, 4, 6)
    u, i, rows = users.copy(), items.copy(), np.arange(len(users), dtype=np.int32)
    m, iterations, removed = kcore_compact(u, i, rows, 4, 6, workers=workers)
    assert removed == ref_removed and iterations == len(ref_removed) + 1
    left = len(users) - np.cumsum([0, *removed[:-1]])
    assert any(r * 4 <= n for r, n in zip(removed, left, strict=True))  # the subtracting path ran
    assert any(r * 4 > n for r, n in zip(removed, left, strict=True))  # and the recounting one
    assert (
        np.array_equal(rows[:m], idx)
        and np.array_equal(u[:m], users[idx])
        and np.array_equal(i[:m], items[idx])
    )


def _build(dump, out, *extra):
    return run_cli(
        "build", "--source", "amazon2014", "--input", f"interactions={dump}", "--item-text", "none",
        "--out", out, "--quiet", *extra,
    )  # fmt: skip


def _hashes(folder):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_many_small_batches_build_the_same_bytes_with_the_columns_on_disk(dump, tmp_path, monkeypatch):
    one = _build(dump, tmp_path / "one" / "ds", "--memory-limit", "100%")
    assert one.exit_code == 0, one.output
    seen = []
    real_collect = collect_mod.collect

    def spying(stream, folder=None, batch_bytes=None):
        got = real_collect(stream, folder, batch_bytes)
        seen.append(sorted(p.name for p in folder.iterdir()))
        return got

    monkeypatch.setattr(collect_mod, "BATCH_BYTES", 32 * 1024)
    monkeypatch.setattr("mmprep.build.collect", spying)
    many = _build(dump, tmp_path / "many" / "ds", "--memory-limit", "64MB")
    assert many.exit_code == 0, many.output
    assert seen == [["rating.bin", "timestamp.bin"]]  # in the spill folder while the build ran
    one_files, many_files = _hashes(tmp_path / "one" / "ds"), _hashes(tmp_path / "many" / "ds")
    manifest = json.loads((tmp_path / "many" / "ds" / "manifest.json").read_text())
    assert manifest["counts"]["raw_records"] == 40_000 and manifest["counts"]["after_dedupe"] < 40_000
    assert {k: v for k, v in one_files.items() if k.endswith(".parquet")} == {
        k: v for k, v in many_files.items() if k.endswith(".parquet")
    }
    assert len([k for k in many_files if k.endswith(".parquet")]) >= 5
    assert [p.name for p in (tmp_path / "many").iterdir()] == ["ds"]


_KILLABLE = """
import sys, time
from pathlib import Path
import mmprep.filter.collect as c
from mmprep.build import BuildParams, build_dataset
from mmprep.sources.base import SourceFiles

c.BATCH_BYTES = 32 * 1024
flush = c._Collector.flush
def slow_flush(self):
    flush(self)
    if self.rating.rows:
        Path(sys.argv[3]).touch()
        time.sleep(120)
c._Collector.flush = slow_flush
build_dataset("x", "amazon2014", SourceFiles({"interactions": [Path(sys.argv[1])]}),
              BuildParams(item_text="none"), Path(sys.argv[2]), quiet=True, memory_limit=64 << 20)
"""


def test_a_killed_build_leaves_nothing_a_rerun_trips_on(dump, tmp_path):
    out, ready = tmp_path / "data" / "ds", tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(dump), str(out), str(ready)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the build never got to its first batch"
        spilled = list((tmp_path / "data").glob(f"{spill.SPILL_PREFIX}{proc.pid}-*"))
        assert len(spilled) == 1 and (spilled[0] / "rating.bin").stat().st_size > 0
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    result = _build(dump, out, "--memory-limit", "64MB")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["ds"]  # the killed build's folder is gone
    scratch = fj._scratch_dir(fj.BLOCK_BYTES) or "/tmp"
    assert not [p for p in os.listdir(scratch) if p.startswith(f"mmprep-inflate-{proc.pid}-")]


def test_one_user_item_sort_cuts_every_split_table_in_order():
    rng = np.random.default_rng(5)
    users = rng.integers(0, 300, 20_000).astype(np.int32)
    items = rng.integers(0, 40, 20_000).astype(np.int32)  # many repeated (user, item) pairs: ties by row
    rating = rng.random(20_000).astype(np.float32)
    order = user_item_order(users, items)
    assert np.array_equal(order, np.lexsort((items, users)))
    # distinct pairs (a deduplicated build) give the same order through the unstable sort
    first = np.sort(np.unique(users.astype(np.int64) * 40 + items, return_index=True)[1])
    assert np.array_equal(
        user_item_order(users[first], items[first], distinct=True), np.lexsort((items[first], users[first]))
    )
    label = rng.integers(0, 3, 20_000)
    for code in range(3):
        rows = np.flatnonzero(label == code)
        cut = interactions_table(users, items, rating, None, order=order[label[order] == code])
        alone = interactions_table(users[rows], items[rows], rating[rows])
        assert cut.equals(alone)


def test_interaction_pieces_write_the_bytes_of_the_whole_table(tmp_path):
    rng = np.random.default_rng(6)
    n = 2 * ROW_GROUP_ROWS + 123_457  # three row groups, the last one partial
    users = rng.integers(0, 50_000, n).astype(np.int32)
    items = rng.integers(0, 9_000, n).astype(np.int32)
    rating = rng.integers(1, 6, n).astype(np.float32)
    stamps = rng.integers(10**9, 2 * 10**9, n)
    order = rng.permutation(n)
    write_parquet(tmp_path / "whole.parquet", interactions_table(users, items, rating, stamps, order=order))
    pieces = list(interaction_pieces(users, items, rating, stamps, order, piece_rows=ROW_GROUP_ROWS))
    assert [len(p) for p in pieces] == [ROW_GROUP_ROWS, ROW_GROUP_ROWS, 123_457]
    write_parquet_tables(tmp_path / "pieces.parquet", INTERACTION_SCHEMA, iter(pieces))
    assert (tmp_path / "pieces.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    # no rows: one empty piece, the bytes of an empty table
    empty = np.zeros(0, dtype=np.int64)
    write_parquet(tmp_path / "empty-whole.parquet", interactions_table(users, items, None, None, order=empty))
    write_parquet_tables(
        tmp_path / "empty-pieces.parquet",
        INTERACTION_SCHEMA,
        interaction_pieces(users, items, None, None, empty),
    )
    assert (tmp_path / "empty-pieces.parquet").read_bytes() == (tmp_path / "empty-whole.parquet").read_bytes()
    with pytest.raises(ValueError, match="multiple of"):
        next(interaction_pieces(users, items, None, None, order, piece_rows=ROW_GROUP_ROWS + 1))


def test_the_build_hashes_the_dump_on_its_one_read(dump, tmp_path, monkeypatch):
    import mmformat.hashing

    hashed_again = []
    real = mmformat.hashing.sha256_file

    def spying(path):
        if Path(path) == dump:  # the outputs are hashed for the manifest; the input should not be again
            hashed_again.append(path)
        return real(path)

    monkeypatch.setattr(fj, "FAST_INFLATE", True)  # the dump is inflated through mmformat.uncached
    monkeypatch.setattr(mmformat.hashing, "sha256_file", spying)
    result = _build(dump, tmp_path / "ds")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    (entry,) = manifest["source"]["files"]
    assert entry["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()
    assert entry["bytes"] == dump.stat().st_size and hashed_again == []


def test_an_id_too_long_to_encode_is_a_one_line_error_naming_file_and_record(tmp_path):
    lines = [
        json.dumps(
            {"reviewerID": f"U{k % 7}", "asin": f"I{k % 5}", "overall": 4.0, "unixReviewTime": 1_000 + k}
        )
        for k in range(40)
    ]
    lines[23] = json.dumps({"reviewerID": "U" * 300, "asin": "I1", "overall": 4.0, "unixReviewTime": 5})
    path = tmp_path / "reviews_long.json"
    path.write_text("\n".join(lines) + "\n")
    result = _build(path, tmp_path / "out")
    one_line_error(result, str(path), "record 24", "user id is 300 bytes long", "255 bytes")
    assert not (tmp_path / "out").exists()
