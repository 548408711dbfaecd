"""Dedupe, iterative k-core and dense re-indexing on hand-made inputs with known answers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmprep.filter.encode import encode_first_appearance
from mmprep.filter.kcore import dedupe_first, dense_remap, duplicate_rows, kcore


def test_kcore_needs_several_iterations_to_converge():
    # u3 falls out first, which leaves i2 with one user, which then leaves u2 with one item.
    users = np.array([0, 0, 1, 1, 2, 2, 3])
    items = np.array([0, 1, 0, 1, 2, 0, 2])
    result = kcore(users, items, k_user=2, k_item=2)
    assert result.keep.tolist() == [True, True, True, True, False, False, False]
    assert result.removed_per_iteration == [1, 1, 1]
    assert result.iterations == 4


def test_kcore_separate_thresholds_for_users_and_items():
    users = np.array([0, 0, 0, 1, 1, 2])
    items = np.array([0, 1, 2, 0, 1, 0])
    # items need 2 users: i2 goes; users need 1 item: everyone else stays.
    result = kcore(users, items, k_user=1, k_item=2)
    assert result.keep.tolist() == [True, True, False, True, True, True]
    # users need 3 items: only u0 qualifies, then every item has one user and k_item=1 keeps them.
    result = kcore(users, items, k_user=3, k_item=1)
    assert result.keep.tolist() == [True, True, True, False, False, False]


def test_kcore_result_is_a_fixed_point():
    rng = np.random.default_rng(0)
    users = rng.zipf(1.6, 20000) % 3000
    items = rng.zipf(1.4, 20000) % 2000
    keep = kcore(users, items, 5, 5).keep
    u, i = users[keep], items[keep]
    assert keep.sum() > 0
    assert np.bincount(u)[np.unique(u)].min() >= 5
    assert np.bincount(i)[np.unique(i)].min() >= 5
    # and nothing more can be removed
    assert kcore(u, i, 5, 5).keep.all()


def test_kcore_can_empty_everything():
    assert not kcore(np.array([0, 1]), np.array([0, 1]), 2, 2).keep.any()


def test_dedupe_keeps_first_occurrence_in_row_order():
    users = np.array([0, 1, 0, 0, 1])
    items = np.array([5, 5, 5, 6, 5])
    assert dedupe_first(users, items, n_items=7).tolist() == [0, 1, 3]
    assert duplicate_rows(users, items, n_items=7).tolist() == [2, 4]


def test_dense_remap_first_appearance_and_sorted():
    codes = np.array([7, 3, 7, 9, 3])
    new, old = dense_remap(codes, "first")
    assert new.tolist() == [0, 1, 0, 2, 1]
    assert old.tolist() == [7, 3, 9]
    labels = np.array([""] * 7 + ["b"] + [""] + ["a"], dtype=object)
    labels[3] = "c"
    new, old = dense_remap(codes, "sorted", labels)
    assert old.tolist() == [9, 7, 3]  # "a" < "b" < "c"
    assert new.tolist() == [1, 2, 1, 0, 2]


def test_encoding_a_chunked_column_matches_the_contiguous_one():
    """Many chunks (one per parsed block) give the same codes and vocabulary as one array, in int32."""
    rng = np.random.default_rng(3)
    values = pa.array([f"u{v}" for v in rng.zipf(1.3, 50_000) % 7_000])
    chunked = pa.chunked_array([values.slice(i, 700) for i in range(0, len(values), 700)])
    codes, vocab = encode_first_appearance(chunked)
    full = pc.dictionary_encode(values)
    assert codes.dtype == np.int32
    assert np.array_equal(codes, full.indices.to_numpy()) and vocab.equals(full.dictionary)
    assert vocab.take(pa.array(codes)).equals(values)
