"""Vectorised, seeded BPR sampler: every training pair once per epoch (MMRec), or batches of uniformly drawn
users with one uniform positive each (LATTICE / MICRO / MMSSL); one uniform negative per triple."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch

from mmtrain.data.interactions import Interactions
from mmtrain.errors import TrainError


class Triples(NamedTuple):
    """(user, positive item, negative item) triples, all int64 on the data device."""

    users: torch.Tensor
    pos_items: torch.Tensor
    neg_items: torch.Tensor


class Batch(Triples):
    """A training batch: the three tensors of :class:`Triples` (unpacking and iteration give exactly those) and
    ``rng``, the trainer's generator, the one random source of a model's draws in this step (None outside the
    trainer)."""

    rng: torch.Generator | None

    def __new__(
        cls,
        users: torch.Tensor,
        pos_items: torch.Tensor,
        neg_items: torch.Tensor,
        rng: torch.Generator | None = None,
    ) -> Batch:
        batch = super().__new__(cls, users, pos_items, neg_items)
        batch.rng = rng
        return batch


SAMPLERS = ("pairs", "users")


class BPRSampler:
    """(user, positive, negative) batches; negatives are drawn from ``pool`` and are never positives.

    ``mode="pairs"`` (MMRec): each epoch shuffles the training pairs, so every pair is used once and a user
    appears as often as they have positives. ``mode="users"`` (LATTICE-family ``sample()``): each of the
    ``n_train // B + 1`` batches draws ``B`` distinct users uniformly from the users with training pairs (with
    replacement when ``B`` exceeds them), then one uniform positive of each, so light users weigh as much as
    heavy ones. Negatives are drawn per epoch (pairs) or per batch (users); collisions with the user's
    training positives are redrawn in vectorised rounds (``Interactions.contains``: a ``searchsorted`` on
    sorted keys), so there is no Python loop per interaction. ``pool`` is the set of items seen in train (MMRec
    ``_sample_neg_ids``) or all items. All randomness comes from ``generator``, so a seed fixes the sequence.
    """

    def __init__(
        self,
        train: Interactions,
        batch_size: int,
        generator: torch.Generator,
        pool: str = "train",
        max_rounds: int = 1000,
        mode: str = "pairs",
    ):
        if len(train) == 0:
            raise TrainError("the training split is empty")
        if mode not in SAMPLERS:
            raise TrainError(f"unknown sampler {mode!r} (choose {' or '.join(SAMPLERS)})")
        self.mode = mode
        self.active_users = train.users_with_items()
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
        if self.mode == "users":
            return len(self.train) // self.batch_size + 1
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
        if self.mode == "users":
            yield from self._user_batches()
            return
        order = torch.randperm(len(self.train), generator=self.generator, device=self.train.device)
        users, pos = self.train.users[order], self.train.items[order]
        neg = self.negatives(users)
        for start in range(0, len(order), self.batch_size):
            end = start + self.batch_size
            yield Batch(users[start:end], pos[start:end], neg[start:end], self.generator)

    def _user_batches(self) -> Iterator[Batch]:
        """``len(self)`` batches of uniformly drawn users, each with one uniform positive and one negative."""
        active, device = self.active_users, self.train.device
        for _ in range(len(self)):
            if self.batch_size <= len(active):
                pick = torch.randperm(len(active), generator=self.generator, device=device)[: self.batch_size]
            else:
                pick = torch.randint(len(active), (self.batch_size,), generator=self.generator, device=device)
            users = active[pick]
            start, count = self.train.indptr[users], self.train.counts[users]
            offset = (torch.rand(users.shape, generator=self.generator, device=device) * count).long()
            pos = self.train.items[start + torch.minimum(offset, count - 1)]
            yield Batch(users, pos, self.negatives(users), self.generator)
