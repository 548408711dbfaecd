"""Dedupe, rating threshold and iterative k-core on integer-coded interactions (numpy, no Python row loops)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEDUPE_PARTS_ROWS = 8 << 20


def first_occurrence_mask(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """Boolean mask over the rows: True at the first occurrence of every ``(user, item)`` pair.

    A pair repeats only within one user, so the rows are cut into parts by ``user % parts`` (about
    :data:`DEDUPE_PARTS_ROWS` rows each) and each part is sorted on its own: the sort's working memory is that
    of one part (24 bytes a row), not of the whole dump.
    """
    n = len(users)
    first = np.zeros(n, dtype=bool)
    parts = max(1, -(-n // DEDUPE_PARTS_ROWS))
    part_of = (users % parts).astype(np.uint16) if parts > 1 else None
    for p in range(parts):
        rows = np.arange(n) if part_of is None else np.flatnonzero(part_of == p)
        if len(rows) == 0:
            continue
        key = (users[rows].astype(np.int64) // parts) * np.int64(n_items) + items[rows].astype(np.int64)
        # group equal keys with a (fast, unstable) sort; the first occurrence is the smallest row index of a
        # group; marking those in the mask gives them in row order without a second sort
        order = np.argsort(key)
        sorted_key = key[order]
        del key
        starts = np.ones(len(rows), dtype=bool)
        np.not_equal(sorted_key[1:], sorted_key[:-1], out=starts[1:])
        del sorted_key
        first[rows[np.minimum.reduceat(order, np.flatnonzero(starts))]] = True
    return first


def dedupe_first(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """Row indices (ascending) keeping the first occurrence of every ``(user, item)`` pair."""
    return np.flatnonzero(first_occurrence_mask(users, items, n_items))


def nonzero_rows(mask: np.ndarray) -> np.ndarray:
    """``np.flatnonzero(mask)`` as int32 when the rows allow (half the memory), built slice by slice."""
    dtype = np.int32 if len(mask) < np.iinfo(np.int32).max else np.int64
    out = np.empty(int(np.count_nonzero(mask)), dtype=dtype)
    step, filled = 1 << 24, 0
    for lo in range(0, len(mask), step):
        hit = np.flatnonzero(mask[lo : lo + step])
        out[filled : filled + len(hit)] = hit + lo
        filled += len(hit)
    return out


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


def kcore(users: np.ndarray, items: np.ndarray, k_user: int, k_item: int) -> KCoreResult:
    """Iterative k-core (MMRec ``0rating2inter``): repeatedly drop every row whose user has fewer than
    ``k_user`` rows or whose item has fewer than ``k_item`` rows (both sets computed on the current rows
    before dropping) until no row is dropped. Returns the surviving-row mask.
    """
    n_u = int(users.max()) + 1 if len(users) else 0
    n_i = int(items.max()) + 1 if len(items) else 0
    removed: list[int] = []
    iterations = 0
    if k_user <= 1 and k_item <= 1:
        return KCoreResult(np.ones(len(users), dtype=bool), 0, removed)
    # the surviving rows are kept compacted (row index, user, item), so each pass only touches those; the
    # first pass works on the input arrays themselves (no copies of the largest arrays)
    idx, u, i = None, users, items
    while True:
        # gather from small boolean tables (cache-friendly) rather than from the int64 degree arrays
        low_user = np.bincount(u, minlength=n_u) < k_user
        low_item = np.bincount(i, minlength=n_i) < k_item
        good = ~low_user[u]
        good &= ~low_item[i]
        n_bad = len(good) - int(np.count_nonzero(good))
        iterations += 1
        if n_bad == 0:
            break
        removed.append(n_bad)
        idx = nonzero_rows(good) if idx is None else idx[good]
        u, i = u[good], i[good]
        del good
    if idx is None:
        return KCoreResult(np.ones(len(users), dtype=bool), iterations, removed)
    keep = np.zeros(len(users), dtype=bool)
    keep[idx] = True
    return KCoreResult(keep, iterations, removed)


def dense_remap(
    codes: np.ndarray, order: str = "first", labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Re-number the codes that occur in ``codes`` to ``0..n-1``.

    ``order="first"``: by first appearance in ``codes`` (row order). ``order="sorted"``: by ``labels[code]``
    (the raw id strings). Returns ``(new_codes, old_code_of_new_index)``.
    """
    if order == "first":
        uniq, first = np.unique(codes, return_index=True)
        old_of_new = uniq[np.argsort(first, kind="stable")]
    elif order == "sorted":
        if labels is None:
            raise ValueError("order='sorted' needs labels")
        uniq = np.unique(codes)
        old_of_new = uniq[np.argsort(labels[uniq], kind="stable")]
    else:
        raise ValueError(f"unknown id order {order!r}")
    lookup = np.full(int(codes.max()) + 1 if len(codes) else 0, -1, dtype=np.int64)
    lookup[old_of_new] = np.arange(len(old_of_new))
    return lookup[codes], old_of_new
