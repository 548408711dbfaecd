"""Turn raw string ids into integer codes in first-appearance order (vectorised with pyarrow)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _shares_one_dictionary(encoded: pa.ChunkedArray) -> bool:
    """True when every chunk points at the same dictionary buffers (Arrow's chunked hash kernel emits one
    final dictionary for all chunks); cheap, it compares addresses, not values."""
    first = [b.address if b is not None else 0 for b in encoded.chunk(0).dictionary.buffers()]
    return all(
        [b.address if b is not None else 0 for b in chunk.dictionary.buffers()] == first
        for chunk in encoded.chunks
    )


def encode_first_appearance(ids: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """``(codes int32, vocabulary)``: ``vocabulary[codes[r]] == ids[r]``, codes numbered by first appearance.

    A chunked column is encoded against one shared dictionary, so the strings are never copied into one
    contiguous array (at 100M rows that copy alone is gigabytes).
    """
    if isinstance(ids, pa.Array):
        ids = pa.chunked_array([ids])
    if ids.num_chunks == 0:
        return np.zeros(0, dtype=np.int32), pa.array([], type=ids.type)
    encoded = pc.dictionary_encode(ids)
    if not _shares_one_dictionary(encoded):  # not seen with pyarrow's kernel; the copying way stays correct
        encoded = pa.chunked_array([pc.dictionary_encode(ids.combine_chunks())])
    codes = np.empty(len(ids), dtype=np.int32)
    start = 0
    for chunk in encoded.chunks:
        codes[start : start + len(chunk)] = chunk.indices.to_numpy(zero_copy_only=False)
        start += len(chunk)
    return codes, encoded.chunk(0).dictionary
