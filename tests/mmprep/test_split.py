"""Warm and cold splits: exact sizes, determinism, guarantees, and the real Baby protocol totals."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

from mmprep.errors import PrepError
from mmprep.split.cold import cold_split
from mmprep.split.warm import TEST, TRAIN, VAL, holdout_sizes, warm_split


def _users_with_degrees(degrees: list[int]) -> tuple[np.ndarray, np.ndarray]:
    users = np.repeat(np.arange(len(degrees)), degrees)
    # every user interacts with items 0..n-1, so every item is trained by someone
    items = np.concatenate([np.arange(d) for d in degrees])
    return users, items


def test_holdout_sizes_follow_the_lattice_rule():
    n = np.array([1, 2, 3, 5, 9, 10, 14, 15, 19, 20, 37])
    val, test = holdout_sizes(n, 0.1, 0.1)
    # LATTICE: n < 10 -> 1/1; else h = int(0.2 n), test = h // 2, val = h - test; capped so train >= 1
    assert test.tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 3]
    assert val.tolist() == [0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 4]
    assert ((n - val - test) >= 1).all()


def test_random_split_sizes_and_determinism():
    users, items = _users_with_degrees([5, 12, 30, 3])
    kw = {"ensure_train_items": False}
    a = warm_split(users, items, None, "random", seed=7, **kw)
    b = warm_split(users, items, None, "random", seed=7, **kw)
    c = warm_split(users, items, None, "random", seed=8, **kw)
    assert np.array_equal(a.label, b.label)
    assert not np.array_equal(a.label, c.label)
    per_user = {u: np.bincount(a.label[users == u], minlength=3).tolist() for u in range(4)}
    assert per_user == {0: [3, 1, 1], 1: [10, 1, 1], 2: [24, 3, 3], 3: [1, 1, 1]}
    assert a.counts() == {"train": 38, "val": 6, "test": 6}


def test_temporal_split_holds_out_the_latest():
    users = np.array([0] * 10 + [1] * 5)
    items = np.arange(15)  # distinct items, so no promotion interferes
    split_kw = {"ensure_train_items": False}
    ts = np.r_[np.arange(10)[::-1] * 10, [5, 1, 4, 2, 3]]
    split = warm_split(users, items, ts, "temporal", **split_kw)
    # user 0: the two latest (ts 90, 80 at rows 0, 1): test = row 0, val = row 1
    assert split.label[:10].tolist() == [TEST, VAL] + [TRAIN] * 8
    # user 1: latest ts 5 (row 10) -> test, ts 4 (row 12) -> val
    assert split.label[10:].tolist() == [TEST, TRAIN, VAL, TRAIN, TRAIN]


def test_leave_last_out():
    users = np.array([0, 0, 0, 0, 1, 1, 2])
    items = np.array([0, 1, 2, 3, 0, 1, 0])
    ts = np.array([1, 4, 3, 2, 7, 6, 1])
    split = warm_split(users, items, ts, "loo", ensure_train_items=False)
    assert split.label.tolist() == [TRAIN, TEST, VAL, TRAIN, TEST, TRAIN, TRAIN]


def test_global_temporal_uses_one_time_order_and_keeps_users_trainable():
    users = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    items = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    ts = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    split = warm_split(users, items, ts, "global-temporal", ensure_train_items=False)
    # 8 train, 1 val, 1 test by time; user 2 (ts 9, 10) would have no train: its earliest moves to train
    assert split.label.tolist() == [TRAIN] * 8 + [TRAIN, TEST]
    assert split.promoted_users == 1


def test_items_seen_only_in_eval_are_promoted_to_train():
    # item 9 is liked once, by a user whose random draw may hold it out: it must end in train
    users = np.array([0] * 10)
    items = np.arange(10)
    for seed in range(20):
        split = warm_split(users, items, None, "random", seed=seed)
        trained = set(items[split.label == TRAIN].tolist())
        assert trained == set(range(10))  # a single user: every item must be trained, so nothing is held out
        assert split.promoted_items == 2


def test_temporal_split_needs_timestamps():
    with pytest.raises(PrepError, match="needs a timestamp"):
        warm_split(np.array([0, 0]), np.array([0, 1]), None, "temporal")


def test_cold_split_micro_protocol():
    n_items = 50
    users = np.repeat(np.arange(20), 10)
    items = np.arange(200) % n_items
    split = cold_split(items, n_items, cold_ratio=0.2, seed=123)
    assert len(split.val_items) == 5 and len(split.test_items) == 5
    assert not set(split.val_items) & set(split.test_items)
    cold = set(split.val_items) | set(split.test_items)
    assert not cold & set(items[split.label == 0].tolist())  # cold items never in train
    assert set(items[split.label == 1].tolist()) == set(split.val_items.tolist())
    assert set(items[split.label == 2].tolist()) == set(split.test_items.tolist())
    assert split.counts() == {"train": 160, "val": 20, "test": 20}
    again = cold_split(items, n_items, cold_ratio=0.2, seed=123)
    assert np.array_equal(again.label, split.label)
    assert len(users) == len(split.label)


def _load_coo(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with open(path, "rb") as f:
            return pickle.load(f)  # trusted: the project's own shared test data


def test_random_split_reproduces_the_baby_protocol_totals(shared_data):
    """The DiffMM/MMSSL Baby split has train 118,551 / val 21,682 / test 20,559: our sizes per user match."""
    d = shared_data / "amazon-baby" / "mmssl-diffmm"
    mats = [_load_coo(d / f) for f in ("trnMat.pkl", "valMat.pkl", "tstMat.pkl")]
    users = np.concatenate([m.row for m in mats]).astype(np.int64)
    items = np.concatenate([m.col for m in mats]).astype(np.int64)
    assert len(users) == 160792
    split = warm_split(users, items, None, "random", seed=123, ensure_train_items=False)
    assert split.counts() == {"train": 118551, "val": 21682, "test": 20559}
    # per user the held-out sizes equal the published split's
    for code, mat in ((VAL, mats[1]), (TEST, mats[2])):
        ours = np.bincount(users[split.label == code], minlength=19445)
        theirs = np.bincount(mat.row, minlength=19445)
        assert np.array_equal(ours, theirs)


def test_random_split_labels_equal_a_lexsort_reference():
    """The per-user ranks (one unstable argsort of a tie-free composite key, the shuffle in int32) give the
    labels of the plain definition: per user, rows ordered by ``default_rng(seed).permutation(n)``, the first
    ``test`` ones to test and the next ``val`` ones to val."""
    rng = np.random.default_rng(12)
    users = rng.integers(0, 700, 20_000).astype(np.int32)
    items = rng.integers(0, 400, 20_000).astype(np.int32)
    got = warm_split(users, items, None, "random", 0.1, 0.1, seed=5, ensure_train_items=False).label
    key = np.random.default_rng(5).permutation(len(users))
    order = np.lexsort((key, users))
    sorted_users = users[order]
    starts = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - np.repeat(starts, np.diff(np.r_[starts, len(users)]))
    val_sz, test_sz = holdout_sizes(np.bincount(users), 0.1, 0.1)
    expected = np.full(len(users), TRAIN, dtype=np.int8)
    expected[rank < val_sz[users] + test_sz[users]] = VAL
    expected[rank < test_sz[users]] = TEST
    # users left without a training row get their earliest row back in train: compare the rest
    has_train = np.bincount(users[expected == TRAIN], minlength=700) > 0
    assert has_train[users].mean() > 0.9
    assert np.array_equal(got[has_train[users]], expected[has_train[users]])
