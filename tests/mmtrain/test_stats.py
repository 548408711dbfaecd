"""mmtrain.stats: Wilcoxon signed-rank against hand-computed exact p values, seed averaging, Holm, markers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon

from mmtrain.stats import holm, marker, mean_std, seed_average, wilcoxon_paired


def test_wilcoxon_exact_p_by_hand_on_the_common_users():
    # differences 1, 2, 3, 4, 5, -6 (no ties): W- = 6; subsets of {1..6} with rank sum <= 6: 14 of 2^6,
    # so the exact two-sided p = 2 * 14 / 64
    base_users = np.array([0, 1, 2, 3, 4, 5, 9])
    base = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 6.0, 0.5])
    users = np.array([0, 1, 2, 3, 4, 5, 7])  # user 7 has no baseline row, user 9 no model row: both ignored
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 0.0, 0.9])
    r = wilcoxon_paired(users, values, base_users, base)
    assert r.n_users == 6
    assert r.statistic == 6.0
    assert r.p == pytest.approx(28 / 64, abs=1e-12)
    assert r.mean == pytest.approx(15 / 6) and r.baseline_mean == pytest.approx(1.0)


def test_wilcoxon_matches_scipy_on_many_users_and_identical_models_give_p_1():
    rng = np.random.default_rng(0)
    users = np.arange(500)
    base = rng.random(500)
    better = base + rng.normal(0.05, 0.2, 500)
    r = wilcoxon_paired(users, better, users, base)
    assert r.p == pytest.approx(wilcoxon(better, base).pvalue, rel=1e-12)
    assert r.p < 0.01
    assert wilcoxon_paired(users, base, users, base.copy()).p == 1.0
    assert wilcoxon_paired(users[:3], base[:3], users[3:], base[3:]).p is None


def test_seed_average_keeps_users_of_every_seed():
    runs = [
        (np.array([0, 1, 2, 5]), np.array([1.0, 0.0, 0.5, 1.0])),
        (np.array([0, 2, 5]), np.array([0.0, 0.5, 1.0])),
        (np.array([0, 2, 3, 5]), np.array([0.5, 0.2, 1.0, 0.0])),
    ]
    users, mean = seed_average(runs)
    assert users.tolist() == [0, 2, 5]
    assert mean.tolist() == pytest.approx([0.5, 0.4, 2 / 3])


def test_holm_on_a_known_p_vector():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max keeps 0.06
    assert holm([0.01, 0.04, None, 0.03, 0.005]) == pytest.approx([0.03, 0.06, None, 0.06, 0.02])
    assert holm([0.6, 0.9]) == [1.0, 1.0]
    assert holm([]) == [] and holm([None]) == [None]
    assert [marker(p) for p in (0.001, 0.01, 0.049, 0.05, None)] == ["**", "*", "*", "", ""]


def test_mean_std_is_the_sample_std_over_seeds():
    assert mean_std([0.1, 0.2, 0.3]) == pytest.approx((0.2, 0.1))
    assert mean_std([0.25]) == (0.25, None)
    assert mean_std([None, float("nan")]) == (None, None)
