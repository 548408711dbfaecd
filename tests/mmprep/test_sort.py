"""mmprep/sort.py: the bucketed argsort gives exactly ``np.argsort``'s order for keys without ties."""

from __future__ import annotations

import numpy as np
import pytest

import mmprep.sort as sort_mod
from mmprep.sort import argsort_distinct


@pytest.fixture()
def small_buckets(monkeypatch):
    monkeypatch.setattr(sort_mod, "BUCKET_ROWS", 64)
    monkeypatch.setattr(sort_mod, "CHUNK_ROWS", 1_000)


def distinct_keys(n: int, high: int, seed: int, low: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keys = np.unique(rng.integers(low, high, 2 * n))[:n]
    rng.shuffle(keys)
    return keys


@pytest.mark.parametrize(
    ("n", "low", "high"),
    [
        (10_000, 0, 2**40),  # user * n_items + item composites
        (10_000, -(2**50), 2**50),  # negative keys
        (5_000, 0, 6_000),  # dense keys: a narrow range, shift 0
        (100, 0, 2**40),  # too few rows to bucket: plain argsort
    ],
)
def test_bucketed_argsort_equals_argsort(small_buckets, n, low, high):
    keys = distinct_keys(n, high, seed=n, low=low)
    order = argsort_distinct(keys)
    assert order.dtype == np.int64
    assert np.array_equal(order, np.argsort(keys))


def test_skewed_keys_in_few_buckets_still_sort(small_buckets):
    # most keys in one narrow range, a few far away: nearly everything lands in one bucket
    keys = np.concatenate([np.arange(9_000) * 3, [2**45, 2**46, 2**47]])
    np.random.default_rng(1).shuffle(keys)
    assert np.array_equal(argsort_distinct(keys), np.argsort(keys))


def test_as_many_buckets_as_fit_uint16(monkeypatch):
    monkeypatch.setattr(sort_mod, "BUCKET_ROWS", 1)
    keys = distinct_keys(200_000, 2**40, seed=3)  # 200,000 rows of 1: capped at 65,536 buckets
    assert np.array_equal(argsort_distinct(keys), np.argsort(keys))
