"""Dedupe, rating threshold and iterative k-core on integer-coded interactions (numpy, no Python row loops)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import numpy as np

DEDUPE_PARTS_ROWS = 8 << 20

T = TypeVar("T")
U = TypeVar("U")


def index_dtype(n: int) -> type[np.integer]:
    """int32 for row numbers, codes or ranks below ``n`` when they fit (half the memory of int64 on the
    largest dumps), int64 otherwise."""
    return np.int32 if n < np.iinfo(np.int32).max else np.int64


# rows per chunk of the chunked loops below: a chunk's int64 row numbers or indices (16 MiB) stay under glibc's
# 32 MiB mmap threshold, so they are reused from the heap instead of mapped and faulted in again for every chunk
COMPACT_CHUNK_ROWS = 1 << 21


def add_counts(counts: np.ndarray, codes: np.ndarray, step: int = 1) -> np.ndarray:
    """``counts += step * np.bincount(codes, minlength=len(counts))``, in place and returned.

    ``np.bincount`` casts int32 codes to a full int64 copy first and allocates a new table each call; on 30M
    codes this accumulation (``np.add.at``, a chunk at a time) takes 0.25 s against 2.2 s.
    """
    for lo in range(0, len(codes), COMPACT_CHUNK_ROWS):
        np.add.at(counts, codes[lo : lo + COMPACT_CHUNK_ROWS], step)
    return counts


def gather(table: np.ndarray, codes: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[:] = table[codes]`` a chunk at a time: ``np.take`` first casts int32 indices to a full int64 copy
    (800 MB for 100M codes, faulted in again on every call)."""
    for lo in range(0, len(codes), COMPACT_CHUNK_ROWS):
        hi = lo + COMPACT_CHUNK_ROWS
        np.take(table, codes[lo:hi], out=out[lo:hi], mode="clip")
    return out


def _zeroed(a: np.ndarray) -> np.ndarray:
    a.fill(0)
    return a


def count_codes(codes: np.ndarray, size: int) -> np.ndarray:
    """How many times each code ``0..size-1`` occurs in ``codes`` (int64), like ``np.bincount``."""
    return add_counts(np.zeros(size, dtype=np.int64), codes)


# the dedupe's candidate rows: those whose pair key's low 24 bits are a repeated key's (a 16 MiB bitmap)
_BITMAP_BITS = 24
_BITMAP_MASK = np.int64((1 << _BITMAP_BITS) - 1)


FILTER_MAX_WORKERS = 2


def filter_workers() -> int:
    """Threads of the dedupe and the k-core: two where the machine has them (numpy's sorts, gathers and
    counts release the GIL, and the filter stage otherwise leaves every other core idle)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(FILTER_MAX_WORKERS, cores)


def first_occurrence_mask(
    users: np.ndarray, items: np.ndarray, n_items: int, workers: int | None = None
) -> np.ndarray:
    """Boolean mask over the rows: True at the first occurrence of every ``(user, item)`` pair.

    A pair repeats only within one user, so the rows are cut into parts by ``user % parts`` (about
    :data:`DEDUPE_PARTS_ROWS` rows each) and each part is handled on its own, in buffers a worker reuses from
    part to part: its working memory is that of one part per worker (about 26 bytes a row), not of the whole
    dump. ``workers`` threads (:func:`filter_workers` by default) take the parts in turn; each clears the
    flags of its own part's rows, so the mask is the same whatever their number.

    In a part, the pair keys are sorted (a plain sort of int64: several times faster than an argsort) to find
    the keys that repeat; the rows holding one of them (and the few others whose key shares its low bits) are
    found through a bitmap of the repeated keys' low bits, and only those rows are argsorted to keep each key's
    first row.
    Duplicates are rare in review dumps (0.35% at 100M synthetic reviews), so almost all the work is the sort.
    """
    n = len(users)
    first = np.ones(n, dtype=bool)
    if n == 0:
        return first
    parts = max(1, -(-n // DEDUPE_PARTS_ROWS))
    if parts == 1:
        _DedupeBuffers(n, users.dtype, items.dtype, gathered=False).clear_repeats(
            users, items, n_items, None, 1, first
        )
        return first
    part_dtype = np.uint8 if parts <= np.iinfo(np.uint8).max + 1 else np.uint16
    # filled slice by slice (``users % parts`` at once would be a raw-length int array)
    part_of = np.empty(n, dtype=part_dtype)
    for lo in range(0, n, DEDUPE_PARTS_ROWS):
        np.remainder(
            users[lo : lo + DEDUPE_PARTS_ROWS],
            parts,
            out=part_of[lo : lo + DEDUPE_PARTS_ROWS],
            casting="unsafe",
        )
    cap = int(count_codes(part_of, parts).max())
    workers = max(1, min(workers or filter_workers(), parts))
    pending = iter(range(parts))
    lock = threading.Lock()

    def work() -> None:
        buffers = _DedupeBuffers(cap, users.dtype, items.dtype, gathered=True)
        while True:
            with lock:
                p = next(pending, None)
            if p is None:
                return
            rows = _rows_of_part(part_of, p)
            buffers.clear_repeats(users, items, n_items, rows, parts, first)

    if workers == 1:
        work()
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mmprep-dedupe") as pool:
            for job in [pool.submit(work) for _ in range(workers)]:
                job.result()
    return first


def _rows_of_part(part_of: np.ndarray, p: int) -> np.ndarray:
    """Row numbers (ascending, int64) where ``part_of == p``, found a slice at a time (no raw-length mask)."""
    found = []
    for lo in range(0, len(part_of), DEDUPE_PARTS_ROWS):
        hit = np.flatnonzero(part_of[lo : lo + DEDUPE_PARTS_ROWS] == p)
        hit += lo
        found.append(hit)
    return np.concatenate(found)


class _DedupeBuffers:
    """One dedupe worker's buffers for parts of at most ``cap`` rows, reused from part to part."""

    def __init__(self, cap: int, user_dtype: np.dtype, item_dtype: np.dtype, gathered: bool) -> None:
        self.key = np.empty(cap, dtype=np.int64)
        self.work = np.empty(cap, dtype=np.int64)
        self.flags = np.empty(cap, dtype=bool)
        self.gathered = np.empty(cap if gathered else 0, dtype=np.result_type(user_dtype, item_dtype))
        self.bitmap = np.zeros(1 << _BITMAP_BITS, dtype=bool)

    def clear_repeats(
        self,
        users: np.ndarray,
        items: np.ndarray,
        n_items: int,
        rows: np.ndarray | None,
        parts: int,
        first: np.ndarray,
    ) -> None:
        """Set ``first`` to False at every repeat of a pair among ``rows`` (all rows when None)."""
        m = len(users) if rows is None else len(rows)
        if m < 2:
            return
        k, w, f = self.key[:m], self.work[:m], self.flags[:m]
        # key = (user // parts) * n_items + item, built in the int64 buffers
        if rows is None:
            np.floor_divide(users, parts, out=k, casting="unsafe")
            np.multiply(k, n_items, out=k)
            np.add(k, items, out=k, casting="unsafe")
        else:
            g = self.gathered[:m]
            np.take(users, rows, out=g, mode="clip")
            np.floor_divide(g, parts, out=k, casting="unsafe")
            np.multiply(k, n_items, out=k)
            np.take(items, rows, out=g, mode="clip")
            np.add(k, g, out=k, casting="unsafe")
        w[:] = k
        w.sort()
        np.equal(w[1:], w[:-1], out=f[1:])
        repeated = w[1:][f[1:]]
        if len(repeated) == 0:
            return
        repeated = np.unique(repeated)
        # candidate rows: their key's low bits are set in the bitmap (every repeated key's row and a few others)
        low = repeated & _BITMAP_MASK
        self.bitmap[low] = True
        np.bitwise_and(k, _BITMAP_MASK, out=w)
        np.take(self.bitmap, w, out=f, mode="clip")
        self.bitmap[low] = False
        cand = np.flatnonzero(f)
        # among the candidates, each key's first row (a stable sort keeps row order) stays; a candidate whose key
        # does not repeat is alone in its group and stays too
        order = np.argsort(k[cand], kind="stable")
        sorted_key = k[cand[order]]
        later = np.ones(len(cand), dtype=bool)
        later[0] = False
        np.equal(sorted_key[1:], sorted_key[:-1], out=later[1:])
        dup = cand[order[later]]
        first[dup if rows is None else rows[dup]] = False


def dedupe_first(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """Row indices (ascending) keeping the first occurrence of every ``(user, item)`` pair."""
    return np.flatnonzero(first_occurrence_mask(users, items, n_items))


def duplicate_rows(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """Row indices (ascending) of repeated ``(user, item)`` pairs, i.e. every occurrence after the first."""
    keep = np.zeros(len(users), dtype=bool)
    keep[dedupe_first(users, items, n_items)] = True
    return np.flatnonzero(~keep)


@dataclass
class KCoreResult:
    """Which rows survive, and how the filter converged."""

    keep: np.ndarray  # bool mask over the input rows
    iterations: int
    removed_per_iteration: list[int] = field(default_factory=list)


def compact(mask: np.ndarray, *arrays: np.ndarray) -> int:
    """Move the rows of ``arrays`` where ``mask`` is True to their front, in place and in row order; returns
    how many there are (``a[:m]`` then holds them).

    Works chunk by chunk (a chunk's selected rows are gathered before being written, and they are written at
    or before the chunk's start), so the only extra memory is one chunk: on a 100M-row dump this replaces
    ``a[mask]`` copies of gigabytes.
    """
    filled = 0
    for lo in range(0, len(mask), COMPACT_CHUNK_ROWS):
        hit = np.flatnonzero(mask[lo : lo + COMPACT_CHUNK_ROWS])
        for a in arrays:
            a[filled : filled + len(hit)] = a[lo : lo + COMPACT_CHUNK_ROWS][hit]
        filled += len(hit)
    return filled


def shrink(a: np.ndarray, m: int) -> np.ndarray:
    """``a[:m]`` without keeping the rest of its memory: resized in place when ``a`` owns its buffer (the
    caller holds the only reference), copied otherwise."""
    if a.flags.owndata and a.flags.c_contiguous and a.base is None:
        a.resize(m, refcheck=False)
        return a
    return a[:m].copy()


def kcore_compact(
    users: np.ndarray,
    items: np.ndarray,
    rows: np.ndarray,
    k_user: int,
    k_item: int,
    workers: int | None = None,
) -> tuple[int, int, list[int]]:
    """Iterative k-core (MMRec ``0rating2inter``) on arrays it may overwrite: repeatedly drop every row whose
    user has fewer than ``k_user`` rows or whose item has fewer than ``k_item`` rows (both sets computed on the
    current rows before dropping) until no row is dropped.

    The surviving rows of ``users``, ``items`` and ``rows`` (any per-row payload, e.g. the raw row index) are
    compacted to the front of the arrays (:func:`compact`); returns their number, the passes made and the rows
    each pass removed.

    Each pass looks every row's code up in a table as long as the code range; the counts per code are kept
    from pass to pass (the rows a pass removes are subtracted; on 100M-review codes most of the late passes
    remove a few thousand rows of ~30M, and recounting them all took the k-core from 19.3 s to 22.6 s). On a
    large dump most codes are gone after the first pass (most users have fewer than k reviews), so whenever
    fewer than half of a side's codes can still survive, that side is renumbered densely for the next passes
    (count tables that fit in cache instead of hundreds of MB) and mapped back at the end: the returned codes
    are the input's (100M-review synthetic codes: the k-core 32.2 s -> 15.8 s). The user side and the item
    side of every step run on two threads when ``workers`` (:func:`filter_workers` by default) allows; the
    result does not depend on it.
    """
    n = len(users)
    n_u = int(users.max()) + 1 if n else 0
    n_i = int(items.max()) + 1 if n else 0
    removed: list[int] = []
    iterations = 0
    if k_user <= 1 and k_item <= 1:
        return n, 0, removed
    workers = workers or filter_workers()
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mmprep-kcore") if workers > 1 else None
    try:
        u_back: np.ndarray | None = None  # the input code of every renumbered code
        i_back: np.ndarray | None = None
        u_deg, i_deg = _sides(
            pool, partial(count_codes, users[:n], n_u), partial(count_codes, items[:n], n_i)
        )
        # per-row flags of every pass, in two buffers reused from pass to pass (fresh raw-length arrays in
        # every pass were faulted in again each time: a third of the k-core's time on the 100M-review codes)
        keep_buf = np.empty(n, dtype=bool)
        other_buf = np.empty(n, dtype=bool)
        while True:
            u, i = users[:n], items[:n]
            keep, other = keep_buf[:n], other_buf[:n]
            # gather from small boolean tables (cache-friendly) rather than from the int64 degree arrays
            user_ok = u_deg >= k_user
            item_ok = i_deg >= k_item
            _sides(pool, partial(gather, user_ok, u, keep), partial(gather, item_ok, i, other))
            np.logical_and(keep, other, out=keep)
            iterations += 1
            n_good = int(np.count_nonzero(keep))
            if n_good == n:
                break
            removed.append(n - n_good)
            # the degrees of the next pass: the removed rows' counts subtracted when they are few (the late
            # passes remove a few thousand rows of tens of millions), else counted again on the rows that stay
            few = (n - n_good) * 4 <= n
            if few:
                bad = np.flatnonzero(np.logical_not(keep, out=other))
                _sides(
                    pool,
                    partial(add_counts, u_deg, u.take(bad), -1),
                    partial(add_counts, i_deg, i.take(bad), -1),
                )
            # the three arrays compacted on the two threads (the row payload with the items)
            _sides(pool, partial(compact, keep, users), partial(compact, keep, items, rows))
            n = n_good
            if not few:  # counted again into the same tables (new tables would be faulted in again)
                _sides(
                    pool,
                    partial(add_counts, _zeroed(u_deg), users[:n]),
                    partial(add_counts, _zeroed(i_deg), items[:n]),
                )
            (u_back, n_u, u_deg), (i_back, n_i, i_deg) = _sides(
                pool,
                partial(_renumber_if_sparse, users[:n], user_ok, u_back, n_u, u_deg),
                partial(_renumber_if_sparse, items[:n], item_ok, i_back, n_i, i_deg),
            )
        _sides(
            pool,
            partial(_map_in_place, users[:n], u_back),
            partial(_map_in_place, items[:n], i_back),
        )
    finally:
        if pool is not None:
            pool.shutdown()
    return n, iterations, removed


def _sides(
    pool: ThreadPoolExecutor | None, user_side: Callable[[], T], item_side: Callable[[], U]
) -> tuple[T, U]:
    """Both sides' results, the user side on a pool thread while the item side runs here (in turn without a
    pool). numpy releases the GIL in the gathers, counts and copies these run."""
    if pool is None:
        return user_side(), item_side()
    job = pool.submit(user_side)
    try:
        item_result = item_side()
    finally:
        user_result = job.result()
    return user_result, item_result


def _renumber_if_sparse(
    codes: np.ndarray, alive: np.ndarray, back: np.ndarray | None, size: int, degree: np.ndarray
) -> tuple[np.ndarray | None, int, np.ndarray]:
    """Renumber ``codes`` (in place) to ``0..alive.sum()-1`` in code order when fewer than half of the ``size``
    codes are ``alive`` (every code in ``codes`` is); returns the composed map back to the input codes (or
    ``back`` as it was), the new code range and ``degree`` (per code) in the new numbering."""
    kept = np.flatnonzero(alive)
    if len(kept) * 2 > size:
        return back, size, degree
    new_code = np.zeros(size, dtype=index_dtype(len(kept)))
    new_code[kept] = np.arange(len(kept), dtype=new_code.dtype)
    _map_in_place(codes, new_code)
    degree = degree[kept]
    kept = kept.astype(codes.dtype, copy=False)
    return (kept if back is None else back[kept]), len(kept), degree


def _map_in_place(codes: np.ndarray, table: np.ndarray | None) -> None:
    """``codes[:] = table[codes]``, a chunk at a time (no second raw-length array); nothing when ``table`` is
    None."""
    if table is None:
        return
    for lo in range(0, len(codes), COMPACT_CHUNK_ROWS):
        chunk = codes[lo : lo + COMPACT_CHUNK_ROWS]
        chunk[:] = table[chunk]


def kcore(users: np.ndarray, items: np.ndarray, k_user: int, k_item: int) -> KCoreResult:
    """:func:`kcore_compact` on copies of ``users`` and ``items``: returns the surviving-row mask (``keep``)."""
    rows = np.arange(len(users), dtype=index_dtype(len(users)))
    m, iterations, removed = kcore_compact(users.copy(), items.copy(), rows, k_user, k_item)
    keep = np.zeros(len(users), dtype=bool)
    keep[rows[:m]] = True
    return KCoreResult(keep, iterations, removed)


def dense_remap(
    codes: np.ndarray, order: str = "first", labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Re-number the codes that occur in ``codes`` to ``0..n-1``.

    ``order="first"``: by first appearance in ``codes`` (row order). ``order="sorted"``: by ``labels[code]``
    (the raw id strings). Returns ``(new_codes, old_code_of_new_index)``.
    """
    if order == "first":
        old_of_new = _first_appearance_order(codes)
    elif order == "sorted":
        if labels is None:
            raise ValueError("order='sorted' needs labels")
        uniq = np.unique(codes)
        old_of_new = uniq[np.argsort(labels[uniq], kind="stable")]
    else:
        raise ValueError(f"unknown id order {order!r}")
    lookup = np.full(int(codes.max()) + 1 if len(codes) else 0, -1, dtype=index_dtype(len(old_of_new)))
    lookup[old_of_new] = np.arange(len(old_of_new))
    return lookup[codes], old_of_new


def _first_appearance_order(codes: np.ndarray) -> np.ndarray:
    """The distinct values of ``codes`` in the order they first appear.

    Non-negative codes below 2**31 and fewer than 2**32 rows (every build) are packed with their row number
    into one int64 and sorted with a plain sort (30M codes: 2-3x faster than ``np.unique(...,
    return_index=True)``, whose stable argsort dominated); other inputs take that slower way.
    """
    n = len(codes)
    if n == 0:
        return codes[:0].copy()
    if n >= 1 << 32 or int(codes.min()) < 0 or int(codes.max()) >= 1 << 31:
        uniq, first = np.unique(codes, return_index=True)
        return uniq[np.argsort(first, kind="stable")]
    packed = codes.astype(np.int64)
    np.left_shift(packed, 32, out=packed)
    packed |= np.arange(n, dtype=np.int64)
    packed.sort()
    high = packed >> 32
    starts = np.flatnonzero(np.concatenate(([True], high[1:] != high[:-1])))
    uniq = high[starts]
    del high
    first = packed[starts] & np.int64(0xFFFFFFFF)
    return uniq[np.argsort(first)].astype(codes.dtype, copy=False)
