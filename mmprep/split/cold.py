"""Item cold-start split, the MICRO protocol (docs/data-pipeline.md, "Item cold-start split")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmprep.errors import PrepError


@dataclass
class ColdSplit:
    """``label[r]``: 0 train (warm item), 1 val (val-cold item), 2 test (test-cold item)."""

    label: np.ndarray
    val_items: np.ndarray
    test_items: np.ndarray

    def counts(self) -> dict[str, int]:
        c = np.bincount(self.label, minlength=3)
        return {"train": int(c[0]), "val": int(c[1]), "test": int(c[2])}


def cold_split(items: np.ndarray, n_items: int, cold_ratio: float = 0.2, seed: int = 123) -> ColdSplit:
    """Draw ``int(cold_ratio * n_items)`` items without replacement (seeded); the first half of the draw is
    test-cold, the rest val-cold. Every interaction of a cold item leaves train, so cold items have none there.
    """
    if not 0 < cold_ratio < 1:
        raise PrepError(f"--cold-ratio must be between 0 and 1, got {cold_ratio}")
    n_cold = int(cold_ratio * n_items)
    if n_cold < 2:
        raise PrepError(f"cold ratio {cold_ratio} of {n_items} items gives fewer than 2 cold items")
    cold = np.random.default_rng(seed).choice(n_items, n_cold, replace=False)
    test_items, val_items = cold[: n_cold // 2], cold[n_cold // 2 :]
    role = np.zeros(n_items, dtype=np.int8)
    role[val_items] = 1
    role[test_items] = 2
    return ColdSplit(
        label=role[np.asarray(items, dtype=np.int64)],
        val_items=np.sort(val_items),
        test_items=np.sort(test_items),
    )
