"""A damaged resume chunk in ``features/.partial-<name>`` is discarded with a warning and recomputed, instead
of failing every rerun until it is deleted by hand (issue 13)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mmprep.features.chunked import (
    ChunkAssembler,
    ChunkStore,
    fingerprint,
    pending_batches,
    plan_chunks,
    run_chunks,
)

N_ITEMS, DIM, CHUNK = 50, 8, 10


def _encoder(seen: list[int]):
    """Vectors that depend only on the item index (as a real model's do on the item's content)."""

    def encode(batches):
        for batch in batches:
            seen.extend(batch.tolist())
            vectors = np.outer(batch + 1, np.arange(1, DIM + 1)).astype(np.float32)
            yield vectors, batch % 3 != 0

    return encode


def _run(root, seen):
    plan = np.random.default_rng(0).permutation(N_ITEMS)
    chunks = plan_chunks(plan, CHUNK)
    params = {"model": "toy"}
    store = ChunkStore(root, "text", fingerprint(params, plan), len(chunks), params)
    run_chunks(store, chunks, batch_size=4, encode_batches=_encoder(seen), desc="toy")
    return store, chunks


def _damage(path, how):
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif how == "garbage":
        path.write_bytes(b"not an npy file at all")
    elif how == "wrong_rows":
        np.save(path, np.ones((CHUNK - 1, DIM), dtype=np.float32))
    elif how == "wrong_width":
        np.save(path, np.ones((CHUNK, DIM + 1), dtype=np.float32))


@pytest.mark.parametrize("how", ["truncated", "garbage", "wrong_rows", "wrong_width"])
def test_damaged_chunk_is_recomputed_with_one_warning(tmp_path, caplog, how):
    reference, chunks = _run(tmp_path / "ref", [])
    expected = reference.assemble(chunks, N_ITEMS, DIM)

    root = tmp_path / "d"
    store, _ = _run(root, [])  # a finished run whose partial directory is kept (as if killed before assembly)
    _damage(store._file(2), how)
    _damage(store._file(4, "ok"), "truncated")
    seen: list[int] = []
    with caplog.at_level(logging.WARNING, logger="mmprep.features"):
        store, chunks = _run(root, seen)
    assert sorted(seen) == sorted(chunks[2].tolist() + chunks[4].tolist())  # only the damaged chunks re-ran
    recompute = [r.getMessage() for r in caplog.records if "recomputing" in r.getMessage()]
    assert len(recompute) == 2 and "chunk_00002.npy" in recompute[0] and "chunk_00004.npy" in recompute[1]
    matrix, ok = store.assemble(chunks, N_ITEMS, DIM)
    assert np.array_equal(matrix, expected[0]) and np.array_equal(ok, expected[1])


def test_batches_arriving_out_of_order_give_the_same_chunks(tmp_path):
    """The Ray engine gets batches back in any order; each chunk is still saved once, with its rows in plan order."""
    reference, chunks = _run(tmp_path / "ref", [])
    expected = reference.assemble(chunks, N_ITEMS, DIM)

    plan = np.concatenate(chunks)
    params = {"model": "toy"}
    store = ChunkStore(tmp_path / "d", "text", fingerprint(params, plan), len(chunks), params)
    batches, owner = pending_batches(store, chunks, 4)
    assert len(batches) == 15 and owner[:3] == [0, 0, 0]  # chunks of 10 items: batches of 4, 4, 2
    assembler = ChunkAssembler(store, batches, owner)
    results = list(_encoder([])(batches))
    for position in np.random.default_rng(1).permutation(len(batches)):
        assert owner[position] not in store.done
        assembler.add(int(position), *results[position])
    assert store.done == set(range(len(chunks)))
    matrix, ok = store.assemble(chunks, N_ITEMS, DIM)
    assert np.array_equal(matrix, expected[0]) and np.array_equal(ok, expected[1])
    with pytest.raises(RuntimeError, match="encoder returned 3 rows for a batch of 4"):
        ChunkAssembler(store, batches, owner).add(0, results[0][0][:3], results[0][1][:3])
