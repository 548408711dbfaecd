"""Vectorised, seeded BPR sampler: every training pair once per epoch, one uniform negative per pair."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch

from mmtrain.data.interactions import Interactions
from mmtrain.errors import TrainError


class Batch(NamedTuple):
    """A training batch of (user, positive item, negative item) triples, all int64 on the data device."""

    users: torch.Tensor
    pos_items: torch.Tensor
    neg_items: torch.Tensor


class BPRSampler:
    """Shuffles the training pairs each epoch and draws negatives from ``pool`` that are not positives.

    Negatives are drawn for the whole epoch at once; collisions with the user's training positives are
    redrawn in vectorised rounds (``Interactions.contains``: a ``searchsorted`` on sorted keys), so there is
    no Python loop per interaction. ``pool`` is the set of items seen in train (MMRec ``_sample_neg_ids``) or
    all items. All randomness comes from ``generator``, so a seed fixes the sequence.
    """

    def __init__(
        self,
        train: Interactions,
        batch_size: int,
        generator: torch.Generator,
        pool: str = "train",
        max_rounds: int = 1000,
    ):
        if len(train) == 0:
            raise TrainError("the training split is empty")
        self.train = train
        self.batch_size = int(batch_size)
        self.generator = generator
        self.max_rounds = max_rounds
        device = train.device
        if pool == "train":
            self.pool = train.item_set()
        elif pool == "all":
            self.pool = torch.arange(train.n_items, device=device)
        else:
            raise TrainError(f"unknown negative pool {pool!r} (choose train or all)")
        # a positive is in the pool by construction for "train"; for "all" every item is in the pool
        full = train.counts >= len(self.pool)
        if bool(full.any()):
            user = int(torch.nonzero(full)[0])
            raise TrainError(f"user {user} has every candidate item as a positive; no negative can be drawn")

    def __len__(self) -> int:
        return -(-len(self.train) // self.batch_size)

    def negatives(self, users: torch.Tensor) -> torch.Tensor:
        """One uniform negative per user from the pool, never a training positive of that user."""
        n_pool = len(self.pool)
        draw = torch.randint(n_pool, users.shape, generator=self.generator, device=users.device)
        neg = self.pool[draw]
        todo = torch.nonzero(self.train.contains(users, neg)).squeeze(1)
        for _ in range(self.max_rounds):
            if todo.numel() == 0:
                return neg
            redraw = torch.randint(n_pool, todo.shape, generator=self.generator, device=users.device)
            neg[todo] = self.pool[redraw]
            todo = todo[self.train.contains(users[todo], neg[todo])]
        raise TrainError(f"negative sampling did not converge in {self.max_rounds} rounds")

    def epoch(self) -> Iterator[Batch]:
        """The batches of one epoch (a fresh permutation and fresh negatives)."""
        order = torch.randperm(len(self.train), generator=self.generator, device=self.train.device)
        users, pos = self.train.users[order], self.train.items[order]
        neg = self.negatives(users)
        for start in range(0, len(order), self.batch_size):
            end = start + self.batch_size
            yield Batch(users[start:end], pos[start:end], neg[start:end])
