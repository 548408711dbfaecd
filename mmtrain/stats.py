"""Statistics of the leaderboard: mean ± std over seeds, paired Wilcoxon tests against a baseline, Holm.

The significance test pairs users: each model's per-user test metric (``*_per_user.parquet``) is first averaged
over its seeds (users every seed evaluated), then compared with the baseline's on the users both have by the
two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``). The p values of all models against the same
baseline are corrected together with Holm's step-down method, which controls the family-wise error rate.
Torch-free (the report command must start fast); scipy is imported only when a test runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def mean_std(values: list[float] | np.ndarray) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1) of the finite values; std is None for fewer than two,
    both are None for none."""
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return None, None
    return float(x.mean()), (float(x.std(ddof=1)) if len(x) > 1 else None)


def seed_average(runs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Average per-user values over seeds: ``runs`` = ``[(users, values), ...]`` (users sorted, unique);
    returns the users present in every run (sorted) and their mean value."""
    if not runs:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    common = runs[0][0]
    for users, _ in runs[1:]:
        common = np.intersect1d(common, users, assume_unique=True)
    total = np.zeros(len(common))
    for users, values in runs:
        total += np.asarray(values, dtype=np.float64)[np.searchsorted(users, common)]
    return common, total / len(runs)


@dataclass
class Paired:
    """A paired comparison of a model with the baseline on their common users."""

    n_users: int
    mean: float  # model's mean over the common users
    baseline_mean: float
    statistic: float | None
    p: float | None  # two-sided; None when it cannot be computed (no common users)


def wilcoxon_paired(
    users: np.ndarray, values: np.ndarray, base_users: np.ndarray, base_values: np.ndarray
) -> Paired:
    """Two-sided Wilcoxon signed-rank test of ``values`` vs ``base_values`` on the users both have.

    Zero differences are dropped (``zero_method="wilcox"``); when every difference is zero the two are
    indistinguishable and p = 1.
    """
    from scipy.stats import wilcoxon

    common, a, b = np.intersect1d(users, base_users, assume_unique=True, return_indices=True)
    x, y = np.asarray(values, np.float64)[a], np.asarray(base_values, np.float64)[b]
    if len(common) == 0:
        return Paired(0, float("nan"), float("nan"), None, None)
    if not np.any(x != y):
        return Paired(len(common), float(x.mean()), float(y.mean()), 0.0, 1.0)
    result = wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
    return Paired(
        len(common), float(x.mean()), float(y.mean()), float(result.statistic), float(result.pvalue)
    )


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm-adjusted p values (step-down, monotone, capped at 1); None entries are skipped and stay None."""
    index = [i for i, p in enumerate(pvalues) if p is not None]
    p = np.asarray([pvalues[i] for i in index], dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = scaled
    out: list[float | None] = [None] * len(pvalues)
    for i, value in zip(index, adjusted.tolist(), strict=True):
        out[i] = value
    return out


def marker(p: float | None) -> str:
    """``**`` for p < 0.01, ``*`` for p < 0.05, else empty (p after Holm)."""
    if p is None:
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""
