"""Degree-sensitive edge pruning of the user-item graph (FREEDOM, docs/graphs.md "FREEDOM's degree-sensitive edge pruning").

Each training edge ``e = (u, i)`` is kept with a weight ``p_e = 1/sqrt(d_u d_i)`` (degrees of the full train
graph), so edges between popular nodes are dropped first; ``int(|E| (1 - dropout))`` edges are drawn without
replacement and the kept sub-graph is re-normalised with its own degrees (``D'^-1/2 A' D'^-1/2``, symmetric).
"""

from __future__ import annotations

import torch

from mmtrain.graph.adjacency import SparseOperator, ui_adjacency


def degree_weights(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """``1/sqrt(d_u d_i)`` for every (user, item) training edge, degrees counted over the given edges."""
    ones = torch.ones(users.numel(), dtype=torch.float32, device=users.device)
    d_user = torch.zeros(n_users, dtype=torch.float32, device=users.device).index_add_(0, users.long(), ones)
    d_item = torch.zeros(n_items, dtype=torch.float32, device=users.device).index_add_(0, items.long(), ones)
    return (d_user[users.long()] * d_item[items.long()]).rsqrt()


def weighted_sample(weights: torch.Tensor, n_keep: int, generator: torch.Generator) -> torch.Tensor:
    """``n_keep`` distinct indices drawn without replacement with probability proportional to ``weights``.

    Efraimidis-Spirakis keys ``log(U)/w`` (top-k): the same distribution as drawing one index at a time
    (``torch.multinomial`` without replacement) but with no size limit and no sequential loop. Returned sorted.
    """
    uniform = torch.rand(weights.shape, generator=generator, device=weights.device, dtype=torch.float64)
    keys = uniform.clamp_min(torch.finfo(torch.float64).tiny).log() / weights.double()
    return torch.topk(keys, n_keep).indices.sort().values


def prune_edges(
    users: torch.Tensor,
    items: torch.Tensor,
    n_users: int,
    n_items: int,
    dropout: float,
    generator: torch.Generator,
) -> SparseOperator:
    """The ``sym``-normalised U-I adjacency of a degree-sensitive sample of ``(1 - dropout)`` of the edges.

    ``dropout <= 0`` keeps every edge (the full ``sym`` adjacency). Memory: O(|E|) for the weights and keys.
    """
    if dropout <= 0:
        return ui_adjacency(users, items, n_users, n_items, "sym")
    n_keep = int(users.numel() * (1.0 - dropout))
    keep = weighted_sample(degree_weights(users, items, n_users, n_items), n_keep, generator)
    return ui_adjacency(users[keep], items[keep], n_users, n_items, "sym")
