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


PARTITION_BITS = 6


def id_partitions(ids: pa.Array, bits: int = PARTITION_BITS) -> np.ndarray:
    """A partition number in ``0 .. 2**bits - 1`` for every string of ``ids`` (uint8/uint16), from a
    multiplicative hash of its last four bytes: equal ids always land in the same partition, and ids that
    differ in their tail (reviewer ids, ASINs, numbers) spread evenly. Vectorised over Arrow's buffers; types
    without plain offsets (string views) all go to partition 0, which stays correct, only slower."""
    n = len(ids)
    dtype = np.uint8 if bits <= 8 else np.uint16
    if n == 0 or bits == 0:
        return np.zeros(n, dtype=dtype)
    if pa.types.is_string(ids.type) or pa.types.is_binary(ids.type):
        offset_type = np.int32
    elif pa.types.is_large_string(ids.type) or pa.types.is_large_binary(ids.type):
        offset_type = np.int64
    else:
        return np.zeros(n, dtype=dtype)
    _, offsets_buf, data_buf = ids.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=offset_type, count=ids.offset + n + 1)[ids.offset :]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8)
        if data_buf is not None and data_buf.size
        else np.zeros(1, np.uint8)
    )
    out = np.empty(n, dtype=dtype)
    # a chunk at a time, so the temporaries are a few MiB reused from the heap, not fresh id-length arrays
    for lo in range(0, n, _HASH_CHUNK):
        ends = offsets[lo + 1 : lo + _HASH_CHUNK + 1]
        lengths = ends - offsets[lo : lo + len(ends)]
        tail = np.zeros(len(ends), dtype=np.uint32)
        for j in range(1, 5):
            byte = data.take(np.maximum(ends - j, 0)).astype(np.uint32)
            byte[lengths < j] = 0
            byte <<= np.uint32(8 * (j - 1))
            tail |= byte
        tail *= np.uint32(0x9E3779B1)  # wraps modulo 2**32 (Fibonacci hashing: the top bits mix every byte)
        tail >>= np.uint32(32 - bits)
        out[lo : lo + len(ends)] = tail
    return out


_HASH_CHUNK = 1 << 18


class Vocabulary:
    """Every distinct id once, with its code: ``take(codes)`` gives the ids of codes.

    The ids are stored in hash partitions (:func:`id_partitions`), each a list of Arrow chunks with the codes
    of their ids, so that looking a batch's ids up touches tables of one partition at a time (see
    :class:`IncrementalEncoder`). ``ids()`` gives them all in code order.
    """

    def __init__(self, value_type: pa.DataType, bits: int = PARTITION_BITS) -> None:
        self.type = value_type
        self.bits = bits
        self.chunks: list[list[pa.Array]] = [[] for _ in range(1 << bits)]
        self.codes: list[list[np.ndarray]] = [[] for _ in range(1 << bits)]
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def partition(self, p: int) -> tuple[pa.ChunkedArray, np.ndarray]:
        """The ids of partition ``p`` and their codes."""
        ids = pa.chunked_array(self.chunks[p], type=self.type)
        codes = np.concatenate(self.codes[p]) if self.codes[p] else np.zeros(0, dtype=np.int32)
        return ids, codes

    def add(self, p: int, ids: pa.Array, codes: np.ndarray) -> None:
        """Append ``ids`` (none known yet) with their ``codes`` to partition ``p``."""
        if len(ids):
            self.chunks[p].append(ids)
            self.codes[p].append(codes)

    def _where(self) -> tuple[pa.ChunkedArray, np.ndarray]:
        """Every stored id (partition by partition) and, for every code, its position among them."""
        store = pa.chunked_array([c for part in self.chunks for c in part], type=self.type)
        where = np.empty(self.size, dtype=np.int32 if self.size < np.iinfo(np.int32).max else np.int64)
        position = 0
        for part in self.codes:
            for codes in part:
                where[codes] = np.arange(position, position + len(codes))
                position += len(codes)
        return store, where

    def take(self, codes: np.ndarray) -> pa.Array:
        """The ids of ``codes``, as one array."""
        store, where = self._where()
        return take_codes(store, where[np.asarray(codes, dtype=np.int64)])

    def ids(self) -> pa.ChunkedArray:
        """All ids in code order."""
        return pa.chunked_array([self.take(np.arange(self.size))], type=self.type)

    def id_of(self, code: int) -> str:
        """The id of one code (a scan of the codes, without building :meth:`take`'s map of every code)."""
        for chunks, codes in zip(self.chunks, self.codes, strict=True):
            for ids, chunk_codes in zip(chunks, codes, strict=True):
                hit = np.flatnonzero(chunk_codes == code)
                if len(hit):
                    return ids[int(hit[0])].as_py()
        raise IndexError(f"code {code} is not in the vocabulary ({self.size} ids)")

    def truncate(self, size: int) -> None:
        """Forget every id whose code is ``size`` or more."""
        for p in range(len(self.chunks)):
            kept_chunks, kept_codes = [], []
            for ids, codes in zip(self.chunks[p], self.codes[p], strict=True):
                keep = codes < size
                if keep.all():
                    kept_chunks.append(ids)
                    kept_codes.append(codes)
                elif keep.any():
                    kept_chunks.append(ids.filter(pa.array(keep)))
                    kept_codes.append(codes[keep])
            self.chunks[p], self.codes[p] = kept_chunks, kept_codes
        self.size = min(self.size, size)


class IncrementalEncoder:
    """First-appearance int32 codes for ids that arrive in batches, without keeping the ids of every row.

    Only the vocabulary (each distinct id once, :class:`Vocabulary`) is kept. A batch is dictionary-encoded on
    its own (first-appearance order within the batch) and its rows get these local codes at once. Every
    ``group`` batches the local vocabularies waiting are merged (dictionary-encoded together, in batch order)
    and the merged distinct ids are looked up in the vocabulary; the ids not found get the next codes, in
    order, and the waiting batches' codes are rewritten in place to the global ones. The codes are therefore
    the same as :func:`encode_first_appearance` of all batches concatenated, whatever ``group`` is.

    The lookup is done one hash partition at a time (the merged ids of partition ``p`` against the vocabulary
    of partition ``p``), so its hash tables hold a 64th of the ids: at 100M reviews (27M user ids) one table
    over all of them made every lookup a cache miss, and the probes took 88 CPU seconds against 3 s at 10M.

    A probe reads the whole vocabulary, so on its own it would grow with the dump. Two rules keep its cost per
    row flat: at least ``group`` batches share one probe, and a probe waits until the batches' distinct ids add
    up to ``1 / reads_per_id`` of the vocabulary, so it reads at most ``reads_per_id`` vocabulary entries per id
    it looks up. The price is keeping the waiting batches' distinct ids, about ``1 / reads_per_id`` of the
    vocabulary. An array returned by :meth:`encode` holds global codes only after :meth:`resolve` (called by
    ``size``, ``vocabulary`` and :meth:`truncate`, and whenever both rules are met).
    """

    def __init__(self, group: int = 1, reads_per_id: float = math.inf, bits: int = PARTITION_BITS) -> None:
        self._vocab: Vocabulary | None = None
        self._bits = bits
        self.group = max(1, int(group))
        self.reads_per_id = float(reads_per_id)
        self._waiting: list[tuple[np.ndarray, pa.Array]] = []
        self._waiting_ids = 0

    @property
    def _size(self) -> int:
        return self._vocab.size if self._vocab is not None else 0

    @property
    def size(self) -> int:
        """How many distinct ids have a code."""
        self.resolve()
        return self._size

    @property
    def vocabulary(self) -> Vocabulary:
        """Every id seen so far; ``vocabulary.take(codes)`` gives the ids of codes."""
        self.resolve()
        if self._vocab is None:
            self._vocab = Vocabulary(pa.string(), self._bits)
        return self._vocab

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
        if self._vocab is None:
            self._vocab = Vocabulary(merged.type, self._bits)
        to_global = self._probe(merged)
        for (local_codes, _), mapping in zip(waiting, to_merged, strict=True):
            local_to_global = to_global if mapping is None else to_global[mapping]
            np.take(local_to_global, local_codes, out=local_codes)

    def _probe(self, merged: pa.Array) -> np.ndarray:
        """The global code of every id of ``merged`` (distinct ids in first-appearance order); the ids not in
        the vocabulary get the next codes in that order and are added to it."""
        vocab = self._vocab
        part = id_partitions(merged, vocab.bits)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange((1 << vocab.bits) + 1))
        by_part = merged.take(pa.array(order))
        to_global = np.full(len(merged), -1, dtype=np.int32)
        for p in range(1 << vocab.bits):
            a, b = int(bounds[p]), int(bounds[p + 1])
            if a == b or not vocab.chunks[p]:
                continue
            # position in this partition's merged ids of every known id of the partition (null: not among them)
            known_ids, known_codes = vocab.partition(p)
            hits = pc.index_in(known_ids, value_set=by_part.slice(a, b - a))
            start = 0
            for chunk in hits.chunks:
                valid = chunk.is_valid()
                known = np.flatnonzero(valid.to_numpy(zero_copy_only=False))
                to_global[order[a + chunk.filter(valid).to_numpy()]] = known_codes[known + start]
                start += len(chunk)
        new = np.flatnonzero(to_global < 0)
        if len(new):
            to_global[new] = np.arange(vocab.size, vocab.size + len(new), dtype=np.int32)
            vocab.size += len(new)
            new_sorted = np.flatnonzero(to_global[order] >= vocab.size - len(new))  # positions in by_part
            new_bounds = np.searchsorted(new_sorted, bounds)
            for p in range(1 << vocab.bits):
                a, b = int(new_bounds[p]), int(new_bounds[p + 1])
                if a < b:
                    rows = new_sorted[a:b]
                    vocab.add(p, by_part.take(pa.array(rows)), to_global[order[rows]])
        return to_global

    def truncate(self, size: int) -> None:
        """Forget every id whose code is ``size`` or more (to re-encode rows read again)."""
        self.resolve()
        if self._vocab is not None and size < self._vocab.size:
            self._vocab.truncate(size)
