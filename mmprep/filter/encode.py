"""Turn raw string ids into integer codes in first-appearance order (vectorised with pyarrow)."""

from __future__ import annotations

import math

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


def take_codes(vocabulary: pa.ChunkedArray, codes: np.ndarray) -> pa.Array:
    """``vocabulary[codes]`` as one array, taken chunk by chunk: Arrow's take on a chunked string array first
    concatenates every chunk (at 100M reviews a transient copy of all raw user ids, ~0.5-1 GB, to keep a few
    million of them)."""
    codes = np.asarray(codes, dtype=np.int64)
    if vocabulary.num_chunks <= 1:
        return vocabulary.combine_chunks().take(pa.array(codes))
    bounds = np.cumsum([0] + [len(c) for c in vocabulary.chunks])
    chunk_of = np.searchsorted(bounds, codes, side="right") - 1
    order = np.argsort(chunk_of, kind="stable")
    sorted_chunks = chunk_of[order]
    present = np.unique(sorted_chunks)
    starts = np.searchsorted(sorted_chunks, present)
    ends = np.searchsorted(sorted_chunks, present, side="right")
    pieces = [
        vocabulary.chunk(int(c)).take(pa.array(codes[order[a:b]] - bounds[c]))
        for c, a, b in zip(present, starts, ends, strict=True)
    ]
    grouped = pa.concat_arrays(pieces) if pieces else pa.array([], type=vocabulary.type)
    back = np.empty(len(codes), dtype=np.int64)
    back[order] = np.arange(len(codes))
    return grouped.take(pa.array(back))


class IncrementalEncoder:
    """First-appearance int32 codes for ids that arrive in batches, without keeping the ids of every row.

    Only the vocabulary (each distinct id once, as Arrow chunks) is kept. A batch is dictionary-encoded on its
    own (first-appearance order within the batch) and its rows get these local codes at once. Every ``group``
    batches the local vocabularies waiting are merged (dictionary-encoded together, in batch order) and the
    merged distinct ids are looked up in the vocabulary, by hashing them and probing the vocabulary with them;
    the ids not found get the next codes, in order, and the waiting batches' codes are rewritten in place to
    the global ones. The codes are therefore the same as :func:`encode_first_appearance` of all batches
    concatenated, whatever ``group`` is.

    The probe reads the whole vocabulary, so on its own it would grow with the dump. Two rules keep its cost
    per row flat: at least ``group`` batches share one probe, and a probe waits until the batches' distinct ids
    add up to ``1 / reads_per_id`` of the vocabulary, so it reads at most ``reads_per_id`` vocabulary entries
    per id it looks up. The price is keeping the waiting batches' distinct ids, about ``1 / reads_per_id`` of
    the vocabulary. An array returned by :meth:`encode` holds global codes only after :meth:`resolve` (called
    by ``size``, ``vocabulary`` and :meth:`truncate`, and whenever both rules are met).
    """

    def __init__(self, group: int = 1, reads_per_id: float = math.inf) -> None:
        self._chunks: list[pa.Array] = []
        self._size = 0
        self.group = max(1, int(group))
        self.reads_per_id = float(reads_per_id)
        self._waiting: list[tuple[np.ndarray, pa.Array]] = []
        self._waiting_ids = 0

    @property
    def size(self) -> int:
        """How many distinct ids have a code."""
        self.resolve()
        return self._size

    @property
    def vocabulary(self) -> pa.ChunkedArray:
        """Every id seen so far; ``vocabulary[code]`` is the id of ``code``."""
        self.resolve()
        return self._vocabulary()

    def _vocabulary(self) -> pa.ChunkedArray:
        return pa.chunked_array(self._chunks, type=self._chunks[0].type if self._chunks else pa.string())

    def encode(self, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The int32 codes of ``ids`` (global once :meth:`resolve` ran; new ids are added to the vocabulary)."""
        local_codes, local_vocab = encode_first_appearance(ids)
        if len(local_vocab):
            self._waiting.append((local_codes, local_vocab))
            self._waiting_ids += len(local_vocab)
            if len(self._waiting) >= self.group and self._waiting_ids * self.reads_per_id >= self._size:
                self.resolve()
        return local_codes

    def resolve(self) -> None:
        """Give the waiting batches their global codes (in place) and add their new ids to the vocabulary."""
        if not self._waiting:
            return
        waiting, self._waiting, self._waiting_ids = self._waiting, [], 0
        if len(waiting) == 1:
            merged = waiting[0][1]
            to_merged = [None]
        else:  # the waiting batches' distinct ids, in batch order, encoded together
            codes, merged = encode_first_appearance(pa.chunked_array([v for _, v in waiting]))
            bounds = np.cumsum([0] + [len(v) for _, v in waiting])
            to_merged = [codes[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        to_global = np.full(len(merged), -1, dtype=np.int32)
        if self._size:
            # position in the merged ids of every known id (null: not among them), read chunk by chunk: the
            # lookup result is as long as the whole vocabulary, so it is never copied into one array
            hits = pc.index_in(self._vocabulary(), value_set=merged)
            start = 0
            for chunk in hits.chunks:
                valid = chunk.is_valid()
                known = np.flatnonzero(valid.to_numpy(zero_copy_only=False))
                to_global[chunk.filter(valid).to_numpy()] = known + start
                start += len(chunk)
            del hits
        new = np.flatnonzero(to_global < 0)
        if len(new):
            to_global[new] = np.arange(self._size, self._size + len(new), dtype=np.int32)
            self._chunks.append(merged.take(pa.array(new)))
            self._size += len(new)
        for (local_codes, _), mapping in zip(waiting, to_merged, strict=True):
            local_to_global = to_global if mapping is None else to_global[mapping]
            np.take(local_to_global, local_codes, out=local_codes)

    def truncate(self, size: int) -> None:
        """Forget every id whose code is ``size`` or more (to re-encode rows read again)."""
        self.resolve()
        if size >= self._size:
            return
        vocab = self._vocabulary().slice(0, size)
        self._chunks = [c for c in vocab.chunks if len(c)]
        self._size = size
