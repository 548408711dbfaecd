"""Dedupe, rating threshold and iterative k-core on integer-coded interactions (numpy, no Python row loops)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def dedupe_first(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """Row indices (ascending) keeping the first occurrence of every ``(user, item)`` pair."""
    key = users.astype(np.int64, copy=False) * np.int64(n_items) + items.astype(np.int64, copy=False)
    # group equal keys with a (fast, unstable) sort; the first occurrence is the smallest row index of a
    # group; marking those in a mask gives them in row order without a second sort
    order = np.argsort(key)
    sorted_key = key[order]
    starts = np.ones(len(key), dtype=bool)
    np.not_equal(sorted_key[1:], sorted_key[:-1], out=starts[1:])
    first = np.zeros(len(key), dtype=bool)
    if len(key):
        first[np.minimum.reduceat(order, np.flatnonzero(starts))] = True
    return np.flatnonzero(first)


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
    # the surviving rows are kept compacted (row index, user, item), so each pass only touches those
    idx, u, i = np.arange(len(users)), users, items
    while True:
        # gather from small boolean tables (cache-friendly) rather than from the int64 degree arrays
        low_user = np.bincount(u, minlength=n_u) < k_user
        low_item = np.bincount(i, minlength=n_i) < k_item
        bad = low_user[u] | low_item[i]
        n_bad = int(np.count_nonzero(bad))
        iterations += 1
        if n_bad == 0:
            break
        removed.append(n_bad)
        good = ~bad
        idx, u, i = idx[good], u[good], i[good]
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
