"""``np.argsort`` of large int64 keys without ties, bucket by bucket so that each sort runs in cache."""

from __future__ import annotations

import numpy as np

BUCKET_ROWS = 1 << 17  # rows a bucket holds on average: its keys and positions fit the CPU's cache
CHUNK_ROWS = 1 << 20  # rows counted into buckets at once: no temporary larger than a chunk
_MAX_BITS = 16  # at most 65,536 buckets: a bucket number fits uint16, which numpy radix-sorts


def argsort_distinct(key: np.ndarray) -> np.ndarray:
    """The int64 positions that sort ``key`` (int64 keys, no two equal): exactly ``np.argsort(key)``, about
    twice as fast on tens of millions of keys.

    One argsort over 30M keys spends its time on cache misses (every comparison reads a key through its
    position). Here the rows are first placed by bucket, a bucket being a range of consecutive key values of
    about :data:`BUCKET_ROWS` rows (a counting sort, a chunk of rows at a time), then every bucket is argsorted
    on its own, in cache. Keys without ties have one sorted order, so the result does not depend on how it
    was found. Used where a build sorts all its interactions (the split's per-user ranks, the dataset's
    ``(user, item)`` order): 30.8M keys 2.9 s against 5.8 s on a 2-core AMD EPYC VM.
    """
    key = np.asarray(key)
    n = len(key)
    if n <= 2 * BUCKET_ROWS:
        return np.argsort(key)
    low = int(key.min())
    bits = min(_MAX_BITS, (n // BUCKET_ROWS - 1).bit_length())
    shift = max(0, (int(key.max()) - low).bit_length() - bits)  # (key - low) >> shift < 2**bits
    n_buckets = 1 << bits

    def bucket_of(lo: int, hi: int) -> np.ndarray:
        part = key[lo:hi] - low
        part >>= shift
        return part.astype(np.uint16)

    counts = np.zeros(n_buckets, dtype=np.int64)
    for lo in range(0, n, CHUNK_ROWS):
        counts += np.bincount(bucket_of(lo, lo + CHUNK_ROWS), minlength=n_buckets)
    bounds = np.zeros(n_buckets + 1, dtype=np.int64)
    np.cumsum(counts, out=bounds[1:])
    filled = bounds[:-1].copy()  # where each bucket's next rows go
    order = np.empty(n, dtype=np.int64)
    for lo in range(0, n, CHUNK_ROWS):
        buckets = bucket_of(lo, lo + CHUNK_ROWS)
        by_bucket = np.argsort(buckets, kind="stable")  # a radix sort of uint16
        sorted_buckets = buckets[by_bucket].astype(np.int64)
        here = np.bincount(buckets, minlength=n_buckets)
        first = np.zeros(n_buckets, dtype=np.int64)
        np.cumsum(here[:-1], out=first[1:])
        rank = np.arange(len(buckets), dtype=np.int64) - first[sorted_buckets]
        order[filled[sorted_buckets] + rank] = by_bucket + lo
        filled += here
    for b in np.flatnonzero(counts > 1):
        lo, hi = int(bounds[b]), int(bounds[b + 1])
        rows = order[lo:hi]
        order[lo:hi] = rows[np.argsort(key[rows])]
    return order
