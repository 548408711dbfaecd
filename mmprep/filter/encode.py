"""Turn raw string ids into integer codes in first-appearance order.

:func:`encode_first_appearance` encodes one column at once with Arrow. :class:`Vocabulary` encodes a stream of
batches against one hash table that lives across batches, so each id is hashed once wherever it appears in a
100M-row dump (vectorised with numpy over Arrow's buffers; no Python loop over ids).
"""

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


MAX_ID_BYTES = 255  # an id's length is kept in one byte of its packed key
SLICE_ROWS = 1 << 20  # rows packed and looked up together: bounds the temporaries to tens of MiB
_MIN_BITS = 10
_EMPTY = -1
_STRING = pa.string()
# the bits of a word that hold its first k bytes (little-endian), for k = 0 .. 8
_KEEP = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [0xFFFF_FFFF_FFFF_FFFF], dtype=np.uint64)
_MIX1 = np.uint64(0x9E37_79B9_7F4A_7C15)
_MIX2 = np.uint64(0xBF58_476D_1CE4_E5B9)


def words_for(max_length: int) -> int:
    """How many 8-byte words a packed key needs for ids of up to ``max_length`` bytes (plus the length byte)."""
    return max(1, -(-(max_length + 1) // 8))


def _offsets(ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The int64 offsets (``len(ids) + 1``) and data bytes of a string or binary array."""
    if pa.types.is_string(ids.type) or pa.types.is_binary(ids.type):
        offset_type = np.int32
    elif pa.types.is_large_string(ids.type) or pa.types.is_large_binary(ids.type):
        offset_type = np.int64
    else:
        raise TypeError(f"ids must be strings or binary, not {ids.type}")
    _, offsets_buf, data_buf = ids.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=offset_type, count=ids.offset + len(ids) + 1)[ids.offset :]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return offsets.astype(np.int64), data


def pack_ids(ids: pa.Array, words: int) -> np.ndarray:
    """``(len(ids), words)`` uint64 keys: each id's bytes, zero-padded, with its length in the last byte.

    Two ids are equal exactly when their keys are (the length byte tells ``"a"`` from ``"a\\0"``), so the keys
    can be hashed and compared as integers. Needs ``words_for(longest id) <= words``.
    """
    n = len(ids)
    offsets, raw = _offsets(ids)
    out = np.empty((n, words), dtype=np.uint64)
    if n == 0:
        return out
    lengths = np.diff(offsets)
    # the ids' bytes, padded so that every 8-byte read below stays inside the buffer
    data = np.zeros(int(offsets[-1] - offsets[0]) + 8 * words + 8, dtype=np.uint8)
    data[: offsets[-1] - offsets[0]] = raw[offsets[0] : offsets[-1]]
    # one unaligned uint64 starting at every byte: reads a word of an id at any offset in one gather
    at_byte = np.ndarray(shape=(len(data) - 7,), dtype=np.uint64, buffer=data, strides=(1,))
    starts = offsets[:-1] - offsets[0]
    shortest = int(lengths.min())
    for w in range(words):
        word = at_byte[starts + 8 * w] if w else at_byte[starts]
        if shortest < 8 * (w + 1):  # some ids end within this word: clear the bytes after them
            word &= _KEEP[np.clip(lengths - 8 * w, 0, 8)]
        out[:, w] = word
    out[:, words - 1] |= lengths.astype(np.uint64) << np.uint64(56)
    return out


def unpack_ids(keys: np.ndarray, value_type: pa.DataType = _STRING) -> pa.Array:
    """The ids of packed keys (:func:`pack_ids` inverted), as an Arrow array of ``value_type``."""
    n, words = keys.shape
    lengths = (keys[:, words - 1] >> np.uint64(56)).astype(np.int64)
    as_bytes = np.ascontiguousarray(keys).view(np.uint8).reshape(n, 8 * words)
    data = as_bytes[np.arange(8 * words) < lengths[:, None]]  # row-major: the ids one after another
    large = pa.types.is_large_string(value_type) or pa.types.is_large_binary(value_type)
    offsets = np.zeros(n + 1, dtype=np.int64 if large else np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(value_type, n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _slots_of(keys: np.ndarray, bits: int) -> np.ndarray:
    """The home slot (``0 .. 2**bits - 1``) of every key: a multiply-xor mix of its words, top bits taken."""
    h = keys[:, 0] * _MIX1
    for w in range(1, keys.shape[1]):
        h ^= keys[:, w]
        h *= _MIX2
    h ^= h >> np.uint64(31)
    h *= _MIX1
    return (h >> np.uint64(64 - bits)).astype(np.int64)


class IdTooLongError(ValueError):
    """An id longer than :data:`MAX_ID_BYTES`: ``row`` is its position in the ids given, ``length`` its bytes."""

    def __init__(self, row: int, length: int) -> None:
        self.row, self.length = row, length
        super().__init__(f"id {row} is {length} bytes long; ids of up to {MAX_ID_BYTES} bytes are supported")


def _same_keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row by row, whether two ``(n, words)`` key arrays hold the same key."""
    same = a[:, 0] == b[:, 0]
    for w in range(1, a.shape[1]):
        same &= a[:, w] == b[:, w]
    return same


class Vocabulary:
    """First-appearance int32 codes for ids that arrive in batches; every distinct id is kept once.

    The ids are stored as packed keys (:func:`pack_ids`) in code order, and an open-addressing hash table
    (linear probing, at most half full) maps a key's slot to its code. The table lives across batches, so an
    id is hashed and looked up once per row it appears in (once per run of equal ids), whatever the number of
    batches: the cost a row grows only with the cache misses of a larger table (BENCHMARKS.md, "Out-of-core"). :meth:`encode` returns global codes at once,
    the same as :func:`encode_first_appearance` of all batches concatenated. Everything is vectorised: a
    batch's rows move through the table together, a probe step at a time.

    Memory: ``8 * words`` bytes an id (16 for ids of up to 15 bytes) plus the table's 4-byte slots, 2 to 4 an
    id; :meth:`compact` drops the table once the last batch is in.
    """

    def __init__(self, value_type: pa.DataType = _STRING) -> None:
        self.type = value_type
        self.size = 0
        self.words = 1
        self._keys = np.zeros((0, 1), dtype=np.uint64)
        self._bits = _MIN_BITS
        self._slots: np.ndarray | None = np.full(1 << _MIN_BITS, _EMPTY, dtype=np.int32)

    def __len__(self) -> int:
        return self.size

    def encode(self, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The int32 codes of ``ids``; ids not seen before get the next codes in order of first appearance."""
        chunks = ids.chunks if isinstance(ids, pa.ChunkedArray) else [ids]
        if not self.size:
            self.type = ids.type
        codes = np.empty(len(ids), dtype=np.int32)
        longest = max((int(pc.max(pc.binary_length(c)).as_py() or 0) for c in chunks if len(c)), default=0)
        if longest > MAX_ID_BYTES:
            lengths = pc.binary_length(ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids)
            raise IdTooLongError(int(np.argmax(lengths.to_numpy(zero_copy_only=False))), longest)
        if any(c.null_count for c in chunks):
            raise ValueError("ids must not be null")
        if words_for(longest) > self.words:
            self._widen(words_for(longest))
        start, waiting = 0, 0
        pieces: list[pa.Array] = []
        for chunk in chunks:  # slices of SLICE_ROWS to 2 * SLICE_ROWS rows, whatever the chunks' sizes
            for lo in range(0, len(chunk), SLICE_ROWS):
                pieces.append(chunk.slice(lo, SLICE_ROWS))
                waiting += len(pieces[-1])
                if waiting >= SLICE_ROWS:
                    start = self._encode_pieces(pieces, codes, start)
                    pieces, waiting = [], 0
        self._encode_pieces(pieces, codes, start)
        return codes

    def _encode_pieces(self, pieces: list[pa.Array], codes: np.ndarray, start: int) -> int:
        n = sum(len(p) for p in pieces)
        if n == 0:
            return start
        keys = np.empty((n, self.words), dtype=np.uint64)
        at = 0
        for piece in pieces:
            keys[at : at + len(piece)] = self._pack(piece)
            at += len(piece)
        codes[start : start + n] = self._encode_keys(keys)
        return start + n

    def _pack(self, ids: pa.Array) -> np.ndarray:
        return pack_ids(ids, self.words)

    def _encode_keys(self, keys: np.ndarray) -> np.ndarray:
        """The codes of packed keys, a run of equal keys looked up once: a dump grouped by product repeats
        each item id in a run of its reviews (about 10 rows a run in the synthetic dumps)."""
        if len(keys) < 2:
            return self._find_or_insert(keys)
        starts = np.flatnonzero(~_same_keys(keys[1:], keys[:-1])) + 1
        if len(starts) > len(keys) // 2:  # mostly runs of one (user ids): not worth the gathers
            return self._find_or_insert(keys)
        starts = np.concatenate([[0], starts])
        codes = self._find_or_insert(keys.take(starts, axis=0))
        return np.repeat(codes, np.diff(starts, append=len(keys)))

    def _find_or_insert(self, keys: np.ndarray) -> np.ndarray:
        """The codes of packed keys: known keys are found, the others inserted (first appearance first)."""
        if self._slots is None or 2 * (self.size + len(keys)) > len(self._slots):  # at most half full
            self._rehash(self.size + len(keys))
        codes, missing, at = self._find(keys)
        if len(missing):
            codes[missing] = self._insert(keys, missing, at)
        return codes

    def _find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Look ``keys`` up: ``(codes, missing rows, their first empty slot)``, the missing rows ascending and
        their codes -1. The first probe (every row at its home slot) settles most rows; the rest step on."""
        at = _slots_of(keys, self._bits)
        codes = self._slots.take(at)
        if not self.size:
            return codes, np.arange(len(keys)), at
        same = _same_keys(self._keys.take(codes, axis=0, mode="clip"), keys)  # clip: -1 (empty) reads row 0
        empty = codes == _EMPTY
        same &= ~empty
        codes[~same] = _EMPTY
        missing, missing_at = [np.flatnonzero(empty)], [at[empty]]
        todo = np.flatnonzero(~(same | empty))
        mask = len(self._slots) - 1
        at = (at[todo] + 1) & mask
        while len(todo):
            code = self._slots.take(at)
            empty = code == _EMPTY
            missing.append(todo[empty])
            missing_at.append(at[empty])
            todo, at, code = todo[~empty], at[~empty], code[~empty]
            same = _same_keys(self._keys.take(code, axis=0), keys.take(todo, axis=0))
            codes[todo[same]] = code[same]
            todo, at = todo[~same], (at[~same] + 1) & mask
        gone = np.concatenate(missing)
        order = np.argsort(gone, kind="stable")  # back to row order
        return codes, gone[order], np.concatenate(missing_at)[order]

    def _insert(self, keys: np.ndarray, rows: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Insert the keys of ``rows`` (ascending, none in the table; ``at`` their first empty slot) and give
        their codes: a distinct key gets the next code in order of its first row.

        All rows of one key walk the same slots together. A round, every row on an empty slot claims it; the
        smallest row wins (``np.maximum.at`` over ``-2 - row``, so the winner does not depend on write order).
        A row on a claimed slot whose key is the claimer's is settled (its key's first row is the claimer);
        the others step on.
        """
        mask = len(self._slots) - 1
        owner = np.empty(len(rows), dtype=np.int64)  # the first row of every row's key
        home = np.empty(len(rows), dtype=np.int64)  # where the first row's key sits
        todo = np.arange(len(rows))
        while len(todo):
            slot = at[todo]
            free = self._slots[slot] == _EMPTY
            if free.any():
                self._slots[slot[free]] = np.iinfo(np.int32).min
                np.maximum.at(self._slots, slot[free], (-2 - rows[todo[free]]).astype(np.int32))
            held = self._slots[slot]
            claimed = held < _EMPTY
            claimer = np.where(claimed, -2 - held.astype(np.int64), 0)
            same = claimed.copy()
            same[claimed] = _same_keys(
                keys.take(claimer[claimed], axis=0), keys.take(rows[todo[claimed]], axis=0)
            )
            owner[todo[same]] = claimer[same]
            home[todo[same]] = slot[same]
            todo = todo[~same]
            at[todo] = (at[todo] + 1) & mask
        first = owner == rows
        new_rows = rows[first]
        new_codes = np.arange(self.size, self.size + len(new_rows), dtype=np.int32)
        self._slots[home[first]] = new_codes
        self._append(keys.take(new_rows, axis=0))
        code_of = np.empty(int(rows[-1]) + 1, dtype=np.int32)
        code_of[new_rows] = new_codes
        return code_of[owner]

    def _append(self, keys: np.ndarray) -> None:
        end = self.size + len(keys)
        if end > len(self._keys):  # grow by a quarter: the copy costs a fraction of the keys, not double
            grown = np.zeros((max(end, len(self._keys) * 5 // 4, 1024), self.words), dtype=np.uint64)
            grown[: self.size] = self._keys[: self.size]
            self._keys = grown
        self._keys[self.size : end] = keys
        self.size = end

    def _rehash(self, capacity: int) -> None:
        """A table of at least ``2 * capacity`` slots holding every stored key."""
        bits = max(_MIN_BITS, int(2 * capacity - 1).bit_length())
        self._bits = bits
        self._slots = np.full(1 << bits, _EMPTY, dtype=np.int32)
        mask = len(self._slots) - 1
        todo = np.arange(self.size, dtype=np.int64)
        at = _slots_of(self._keys[: self.size], bits)
        while len(todo):  # the stored keys are distinct: any one claimant of a free slot may take it
            free = self._slots[at] == _EMPTY
            self._slots[at[free]] = todo[free]
            settled = np.zeros(len(todo), dtype=bool)
            settled[free] = self._slots[at[free]] == todo[free]
            todo, at = todo[~settled], (at[~settled] + 1) & mask

    def _widen(self, words: int) -> None:
        """Keys of ``words`` words (longer ids arrived): same bytes, the length byte moved to the new end."""
        wide = np.zeros((len(self._keys), words), dtype=np.uint64)
        wide[:, : self.words] = self._keys
        lengths = wide[:, self.words - 1] >> np.uint64(56)
        wide[:, self.words - 1] &= _KEEP[7]
        wide[:, words - 1] |= lengths << np.uint64(56)
        self._keys, self.words = wide, words
        self._rehash(self.size)

    def take(self, codes: np.ndarray) -> pa.Array:
        """The ids of ``codes``, as one array."""
        codes = np.asarray(codes, dtype=np.int64)
        if len(codes) and (codes.min() < 0 or codes.max() >= self.size):
            raise IndexError(f"codes must be in 0 .. {self.size - 1}")
        pieces = [
            unpack_ids(self._keys.take(codes[lo : lo + SLICE_ROWS], axis=0), self.type)
            for lo in range(0, len(codes), SLICE_ROWS)
        ]
        return pa.concat_arrays(pieces) if pieces else pa.array([], type=self.type)

    def ids(self) -> pa.ChunkedArray:
        """All ids in code order."""
        return pa.chunked_array(
            [
                unpack_ids(self._keys[lo : min(lo + SLICE_ROWS, self.size)], self.type)
                for lo in range(0, self.size, SLICE_ROWS)
            ],
            type=self.type,
        )

    def id_of(self, code: int) -> str:
        """The id of one code."""
        return self.take(np.array([code]))[0].as_py()

    def compact(self) -> None:
        """Drop the hash table and the keys' spare room, once the last batch is encoded: the ids stay (``take``,
        ``ids``, ``id_of``); a later :meth:`encode` builds the table again. At 100M reviews this frees about
        0.5 GB before the filter stage, where a build peaks."""
        self._slots = None
        if len(self._keys) > self.size:
            self._keys = self._keys[: self.size].copy()

    def truncate(self, size: int) -> None:
        """Forget every id whose code is ``size`` or more (to re-encode rows read again)."""
        if size < self.size:
            self.size = size
            self._rehash(size)
