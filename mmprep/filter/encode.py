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
    if len(ids) == 0:
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


class IncrementalEncoder:
    """First-appearance int32 codes for ids that arrive in batches, without keeping the ids of every row.

    Only the vocabulary (each distinct id once, as Arrow chunks) is kept. A batch is dictionary-encoded on its
    own (first-appearance order within the batch); its distinct ids are then looked up in the vocabulary by
    hashing the batch's ids and probing the vocabulary with them (cost: one pass over the vocabulary per batch,
    so batches should be large), and the ids not found get the next codes, in batch order. The codes are
    therefore the same as :func:`encode_first_appearance` of all batches concatenated.
    """

    def __init__(self) -> None:
        self._chunks: list[pa.Array] = []
        self.size = 0

    @property
    def vocabulary(self) -> pa.ChunkedArray:
        """Every id seen so far; ``vocabulary[code]`` is the id of ``code``."""
        return pa.chunked_array(self._chunks, type=self._chunks[0].type if self._chunks else pa.string())

    def encode(self, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The int32 codes of ``ids`` (new ids are added to the vocabulary)."""
        local_codes, local_vocab = encode_first_appearance(ids)
        if len(local_vocab) == 0:
            return local_codes
        to_global = np.full(len(local_vocab), -1, dtype=np.int32)
        if self.size:
            # position in this batch's vocabulary of every known id (null: not in this batch)
            hits = pc.index_in(self.vocabulary, value_set=local_vocab)
            hits = hits.combine_chunks() if isinstance(hits, pa.ChunkedArray) else hits
            known = np.flatnonzero(hits.is_valid().to_numpy(zero_copy_only=False))
            to_global[hits.filter(hits.is_valid()).to_numpy()] = known
        new = np.flatnonzero(to_global < 0)
        if len(new):
            to_global[new] = np.arange(self.size, self.size + len(new), dtype=np.int32)
            self._chunks.append(local_vocab.take(pa.array(new)))
            self.size += len(new)
        return to_global[local_codes]

    def truncate(self, size: int) -> None:
        """Forget every id whose code is ``size`` or more (to re-encode rows read again)."""
        if size >= self.size:
            return
        vocab = self.vocabulary.slice(0, size)
        self._chunks = [c for c in vocab.chunks if len(c)]
        self.size = size
