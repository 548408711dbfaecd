"""One split's (user, item) pairs on a device: CSR by user plus a sorted key array for membership tests."""

from __future__ import annotations

import numpy as np
import torch


class Interactions:
    """The positives of one split, deduplicated and sorted by (user, item).

    ``keys = user * n_items + item`` is sorted, so ``contains`` is one ``torch.searchsorted`` (used by the
    negative sampler's rejection rounds and by the evaluator's hit test); ``indptr``/``items`` is the CSR by
    user (used to mask a batch of users' items in the score matrix).
    """

    def __init__(self, users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int):
        self.n_users, self.n_items = int(n_users), int(n_items)
        keys = torch.unique(users.long() * self.n_items + items.long())
        self.keys = keys
        self.users = keys // self.n_items
        self.items = keys % self.n_items
        counts = torch.bincount(self.users, minlength=self.n_users)
        self.counts = counts
        self.indptr = torch.zeros(self.n_users + 1, dtype=torch.long, device=keys.device)
        self.indptr[1:] = torch.cumsum(counts, 0)

    @classmethod
    def from_numpy(
        cls, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, device: torch.device
    ) -> Interactions:
        return cls(
            torch.as_tensor(np.asarray(users, dtype=np.int64), device=device),
            torch.as_tensor(np.asarray(items, dtype=np.int64), device=device),
            n_users,
            n_items,
        )

    def __len__(self) -> int:
        return int(self.keys.numel())

    @property
    def device(self) -> torch.device:
        return self.keys.device

    def contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Boolean tensor (shape of ``users``): is each (user, item) pair in this split?"""
        if len(self) == 0:
            return torch.zeros(users.shape, dtype=torch.bool, device=users.device)
        query = users.long() * self.n_items + items.long()
        pos = torch.searchsorted(self.keys, query.reshape(-1)).clamp_(max=len(self) - 1)
        return (self.keys[pos] == query.reshape(-1)).reshape(users.shape)

    def rows_of(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch_row, item)`` of every positive of ``users`` (row = position in ``users``), vectorised."""
        starts = self.indptr[users]
        counts = self.indptr[users + 1] - starts
        rows = torch.repeat_interleave(torch.arange(len(users), device=users.device), counts)
        offsets = torch.arange(int(counts.sum()), device=users.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        return rows, self.items[starts[rows] + offsets]

    def users_with_items(self) -> torch.Tensor:
        """Sorted user indices with at least one pair in this split."""
        return torch.nonzero(self.counts > 0).squeeze(1)

    def item_set(self) -> torch.Tensor:
        """Sorted distinct items of this split."""
        return torch.unique(self.items)
