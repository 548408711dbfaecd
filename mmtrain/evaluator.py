"""Full-ranking evaluation: score every item for a batch of users, mask, ``torch.topk``, then the metrics.

Protocol (docs/evaluation.md, which also compares it with the original codes' protocols):

- Users evaluated: those with at least one item in the evaluated split (others are skipped); every metric is
  a plain mean over them.
- Masked (score -inf): the user's **train** items; at test time also the user's **val** items when
  ``mask_val_at_test`` (default True; MMRec and LATTICE mask train only, so set it False to match them).
- Cold split: ranking is among all items minus the masked ones (the MICRO protocol), or, with
  ``cold_candidates="cold"``, among the cold items of the evaluated role only (val-cold for val, test-cold for
  test).
- Ties: the ranked list is deterministic on every device; equal scores are ordered by lower item index
  (``stable_topk``), where ``torch.topk`` leaves the order of ties unspecified.
- Metrics at each K (docs/evaluation.md "Metric definitions", read on the top-max(K) list): Recall, NDCG (standard IDCG
  over ``min(|T_u|, K)``), Precision, Hit, MAP; with ``legacy_ndcg="lattice"`` also ``ndcg_lattice@K``,
  the LATTICE/MICRO/MMSSL NDCG whose IDCG counts the hits ``h`` in the top-max(K) list (``min(h, K)`` ideal
  positions; 0 when h = 0).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from mmtrain.data.interactions import Interactions
from mmtrain.data.loader import TrainData
from mmtrain.distributed import LOCAL, DistContext
from mmtrain.errors import TrainError
from mmtrain.models.base import Model
from mmtrain.per_user import SPLITS, write_per_user


def _ideal_dcg(counts: torch.Tensor, discounts: torch.Tensor) -> torch.Tensor:
    """``Σ_{j=1}^{c} 1/log2(j+1)`` for each count c (0 for c = 0)."""
    table = torch.cat([discounts.new_zeros(1), torch.cumsum(discounts, 0)])
    return table[counts.long().clamp(0, len(discounts))]


def ranking_metrics(
    hits: torch.Tensor, n_pos: torch.Tensor, topk: list[int] | tuple[int, ...], legacy_ndcg: bool = False
) -> dict[str, torch.Tensor]:
    """Per-user metrics from a hit matrix.

    ``hits``: bool/0-1 ``[B, Kmax]``, ``hits[u, k]`` = the item at rank k+1 of user u's list is held out;
    ``n_pos``: ``[B]`` number of held-out items ``|T_u|`` (> 0). Returns ``{"recall@K": [B], ...}``.
    """
    r = hits.double()
    kmax = r.shape[1]
    ranks = torch.arange(1, kmax + 1, dtype=torch.float64, device=r.device)
    discounts = 1.0 / torch.log2(ranks + 1.0)
    n_hits = torch.cumsum(r, 1)
    dcg = torch.cumsum(r * discounts, 1)
    ap_terms = torch.cumsum(r * n_hits / ranks, 1)
    n_pos = n_pos.double()
    retrieved = n_hits[:, -1]
    out: dict[str, torch.Tensor] = {}
    for k in topk:
        if k > kmax:
            raise ValueError(f"K={k} exceeds the ranked list length {kmax}")
        h = n_hits[:, k - 1]
        out[f"recall@{k}"] = h / n_pos
        out[f"ndcg@{k}"] = dcg[:, k - 1] / _ideal_dcg(torch.clamp(n_pos, max=k), discounts)
        out[f"precision@{k}"] = h / k
        out[f"hit@{k}"] = (h > 0).double()
        out[f"map@{k}"] = ap_terms[:, k - 1] / torch.clamp(n_pos, max=k)
        if legacy_ndcg:
            ideal = _ideal_dcg(torch.clamp(retrieved, max=k), discounts)
            out[f"ndcg_lattice@{k}"] = torch.where(ideal > 0, dcg[:, k - 1] / ideal.clamp(min=1e-12), 0.0)
    return out


def stable_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk`` over the last dim with ties broken by the lower index, in both membership and order.

    ``torch.topk`` gives the k+1 largest values; the first k are then ordered by (value desc, index asc) with
    two small sorts. Rows whose (k+1)-th value ties the k-th (rare with float scores) may have left out a
    lower-indexed tie, so their membership is redone exactly: every entry above the k-th value plus the
    lowest-indexed ties. Entries equal to ``-inf`` (masked items) are exempt: which of them fill a short list
    is unspecified, and they never count as hits.
    """
    extra = int(k < scores.shape[1])
    values, index = torch.topk(scores, k + extra, dim=1)
    threshold = values[:, k - 1 : k]
    redo = (
        (values[:, -1] == threshold[:, 0]) if extra else torch.zeros_like(threshold[:, 0], dtype=torch.bool)
    )
    values, index = values[:, :k], index[:, :k]
    redo &= threshold[:, 0] > float("-inf")
    if bool(redo.any()):
        sub, t = scores[redo], threshold[redo]
        tied = sub == t
        keep = (sub > t) | (tied & (torch.cumsum(tied, 1) <= k - (sub > t).sum(1, keepdim=True)))
        index[redo] = torch.nonzero(keep)[:, 1].reshape(-1, k)
        values[redo] = torch.gather(sub, 1, index[redo])
    index, order = torch.sort(index, dim=1)
    values = torch.gather(values, 1, order)
    values, order = torch.sort(values, dim=1, descending=True, stable=True)
    return values, torch.gather(index, 1, order)


class Evaluator:
    """Evaluates a model on the val or test split of a :class:`TrainData` (see the module docstring)."""

    def __init__(
        self,
        data: TrainData,
        topk: list[int] | tuple[int, ...] = (10, 20, 50),
        batch_size: int = 4096,
        mask_val_at_test: bool = True,
        legacy_ndcg: str = "none",
        cold_candidates: str = "all",
        dist: DistContext = LOCAL,
    ):
        if cold_candidates == "cold" and data.split != "cold":
            raise TrainError("cold_candidates=cold needs the cold split set (--split cold)")
        self.data = data
        self.topk = sorted(int(k) for k in topk)
        self.batch_size = int(batch_size)
        self.mask_val_at_test = mask_val_at_test
        self.legacy = legacy_ndcg == "lattice"
        self.cold_candidates = cold_candidates
        self.dist = dist
        self.last_per_user: dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]] = {}

    @classmethod
    def from_config(cls, data: TrainData, config: dict[str, Any], dist: DistContext = LOCAL) -> Evaluator:
        """An evaluator with the evaluation keys of a resolved run configuration (sharded over ``dist``)."""
        return cls(
            data,
            topk=config["topk"],
            batch_size=config["eval_batch_size"],
            mask_val_at_test=config["mask_val_at_test"],
            legacy_ndcg=config["legacy_ndcg"],
            cold_candidates=config["cold_candidates"],
            dist=dist,
        )

    def masks(self, split: str) -> list[Interactions]:
        """The splits whose items are excluded from the ranking when evaluating ``split``."""
        masks = [self.data.train]
        if split == "test" and self.mask_val_at_test:
            masks.append(self.data.val)
        return masks

    def excluded_items(self, split: str) -> torch.Tensor | None:
        """Items outside the candidate set for every user (cold split with ``cold_candidates="cold"``)."""
        if self.cold_candidates != "cold":
            return None
        allowed = torch.zeros(self.data.n_items, dtype=torch.bool, device=self.data.device)
        allowed[self.data.cold_items[split]] = True
        return ~allowed

    def eval_users(self, split: str) -> torch.Tensor:
        """Users with at least one held-out item in ``split`` (the others are skipped)."""
        return getattr(self.data, split).users_with_items()

    def rankings(
        self, model: Model, split: str, users: torch.Tensor | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(users, top items [B, Kmax], their scores)`` per user batch; masked items score -inf.

        ``users`` defaults to :meth:`eval_users`. Kmax is ``max(topk)`` capped at the number of items; must run
        inside ``model.evaluation()``.
        """
        users = self.eval_users(split) if users is None else users
        masks = self.masks(split)
        excluded = self.excluded_items(split)
        kmax = min(self.topk[-1], self.data.n_items)
        for start in range(0, len(users), self.batch_size):
            batch = users[start : start + self.batch_size]
            scores = model.full_scores(batch).float()
            for mask in masks:
                rows, items = mask.rows_of(batch)
                scores[rows, items] = float("-inf")
            if excluded is not None:
                scores[:, excluded] = float("-inf")
            values, top = stable_topk(scores, kmax)
            yield batch, top, values

    def top_items(self, model: Model, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(users, top items [n_users_evaluated, Kmax])`` of ``split``; items with score -inf are -1."""
        users, tops = [], []
        with model.evaluation():
            for batch, top, values in self.rankings(model, split):
                users.append(batch)
                tops.append(torch.where(values > float("-inf"), top, -1))
        return torch.cat(users), torch.cat(tops)

    def per_user(self, model: Model, split: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(users [n], {metric: float64 values [n]})`` for the users with held-out items in ``split``.

        The users come in evaluation order (ascending index); the mean of each column is :meth:`evaluate`'s
        value. The per-batch metric tensors are concatenated once per split, no loop over users. In a
        distributed run each rank ranks a contiguous share of the users and every rank gets all the rows
        (a collective: every rank must call it).
        """
        users, metrics = self._per_user_share(model, split)
        return self.dist.gather_per_user(users, metrics, self.data.device)

    def _per_user_share(self, model: Model, split: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """:meth:`per_user` of this rank's share of the evaluated users (all of them in one process)."""
        target: Interactions = getattr(self.data, split)
        evaluated = self.eval_users(split)
        evaluated = evaluated[self.dist.shard(len(evaluated))]
        users: list[torch.Tensor] = []
        parts: dict[str, list[torch.Tensor]] = {}
        with model.evaluation():
            for batch, top, values in self.rankings(model, split, evaluated):
                hits = target.contains(batch.unsqueeze(1).expand_as(top), top) & (values > float("-inf"))
                if hits.shape[1] < self.topk[-1]:
                    hits = torch.nn.functional.pad(hits, (0, self.topk[-1] - hits.shape[1]))
                for name, value in ranking_metrics(
                    hits, target.counts[batch], self.topk, self.legacy
                ).items():
                    parts.setdefault(name, []).append(value)
                users.append(batch)
        if not users:
            empty = torch.zeros(0, dtype=torch.float64)
            names = ranking_metrics(torch.zeros(0, self.topk[-1]), torch.zeros(0), self.topk, self.legacy)
            return torch.zeros(0, dtype=torch.long), {name: empty for name in names}
        return torch.cat(users), {name: torch.cat(values) for name, values in parts.items()}

    def evaluate(self, model: Model, split: str) -> dict[str, float]:
        """Mean metrics over the users with held-out items in ``split`` (``val`` or ``test``).

        The per-user values behind the means are kept in ``last_per_user[split]`` (on the data's device), so a
        caller can write them without evaluating again.
        """
        users, metrics = self.per_user(model, split)
        self.last_per_user[split] = (users, metrics)
        n_users = len(users)
        result: dict[str, float] = {
            name: float(values.sum()) / max(n_users, 1) for name, values in metrics.items()
        }
        result["n_users"] = n_users
        return result


def save_per_user(evaluator: Evaluator, model: Model, run_dir: Path | None) -> None:
    """Write ``val_per_user.parquet`` and ``test_per_user.parquet`` (``mmtrain.per_user``) for ``model`` in its
    current (best) state: test from the evaluation :meth:`Evaluator.evaluate` just made, val evaluated again
    (the best epoch's val evaluation was not kept). The ranks of a distributed run other than 0 pass
    ``run_dir=None``: they take part in the val evaluation and write nothing."""
    for split in SPLITS:
        cached = evaluator.last_per_user.get(split) if split == "test" else None
        users, metrics = cached or evaluator.per_user(model, split)
        if run_dir is not None:
            write_per_user(
                run_dir, split, users.cpu().numpy(), {k: v.cpu().numpy() for k, v in metrics.items()}
            )
