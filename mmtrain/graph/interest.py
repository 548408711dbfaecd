"""SOIL's graphs from training interactions and multimodal similarity (docs/graphs.md "SOIL interest graphs").

``S_m = X̂_m X̂_mᵀ`` is the cosine similarity of modality m (self included); ``I(u)`` the training items of u.

- **Interest item graph** (per modality): for each user, ``cols(u) = ∪_m topk_j(Σ_{i∈I(u)} S_m[i, j], knn_i)``
  (the same columns for every modality); the entries ``I(u) × cols(u)`` of ``interest_m`` get ``S_m[i, j]``,
  assigned once (paper) or added once per user (``accumulate``: the reference code's ``+=``).
- **Second-order U-I edges**: weighted user-item pairs ``s_uj`` from the product over modalities of the cosines
  ``P[i, j] = Π_m S_m[i, j]`` (the reference's "visual x textual"; with other modalities, e.g. TikTok's image and
  audio, the product runs over the modalities available; with one modality it is that cosine):
  - ``code``: the ``K_u = knn_a + |I(u)|`` largest entries of the block ``P[I(u), :]`` (the reference takes each
    row's top-K_u, then the top-K_u of the flattened values, which selects the same entries); an item chosen from
    several history rows gets the sum of those values (sparse ``+=``). Since ``|P| <= 1 = P[i, i]``, these are the
    history items themselves (weight 1) plus the ``knn_a`` largest off-diagonal entries (up to ties at 1, i.e.
    items whose features duplicate in every modality). A zero feature row (NaN cosines in the reference) has
    cosine 0 here; its history entry still gets weight 1.
  - ``paper``: the ``knn_a`` items j ∉ I(u) with the largest attractiveness ``S^a_uj = mean_{i∈I(u)} P[i, j]``,
    weighted by ``S^a_uj``. The paper's Eq. 2 was not available to us: the mean over the history is our
    assumption for S^a; "second-order" items are the unrecorded ones, hence the history is excluded.

Graphs are normalised like the reference's sparse Laplacian (``get_sparse_laplacian``, norm ``sym``):
``d_i^-1/2 w_ij d_j^-1/2`` on row sums of the (possibly negative) values, then floored at ``1e-7`` (negative
cosines survive in the interest graph: columns chosen by one modality's similarity can have a negative cosine
in another); a non-positive degree gives 0 instead of the reference's NaN.

Nothing here is N x N or loops per user; each step holds one block of about ``block_elements`` similarity
entries: interest columns ``(R X̂_m)[users] X̂_mᵀ`` for blocks of users (``[B, N]``); code-variant edges from each
item's top-``knn_a`` off-diagonal products (blocks of rows of P, ``[B, N]``), reduced per user by a segmented
sort of ``|E|·knn_a`` candidates; paper-variant scores ``(D_u^-1 R) P[:, J]`` for blocks of item columns
(``[N, B]`` and ``[M, B]``) with a running per-user top-``knn_a``. Cost O(N²·Σ d_m + |E|·N) for the edges,
O(M·N·Σ d_m) for the interest columns. Memory besides the block: O(|E|·n_mods·knn_i) interest pair keys; the
outputs are sparse (interest graphs at most ``|E|·n_mods·knn_i`` entries, second-order edges
``|E| + M·knn_a`` (code) or ``M·knn_a`` (paper)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmtrain.graph.adjacency import SparseOperator, bipartite_block, normalize, sparse_matrix
from mmtrain.graph.knn import BLOCK_ELEMENTS

VARIANTS = ("paper", "code")
WEIGHT_FLOOR = 1e-7


def unit_rows(features: torch.Tensor) -> torch.Tensor:
    """Row-wise L2-normalised float32 features (zero rows stay zero)."""
    return F.normalize(features.float(), dim=1)


def user_offsets(users: torch.Tensor, n_users: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(degree, start)`` per user of training pairs sorted by user: the pair count and the first position."""
    degree = torch.bincount(users, minlength=n_users)
    return degree, torch.cumsum(degree, 0) - degree


def interest_columns(
    users: torch.Tensor,
    items: torch.Tensor,
    n_users: int,
    n_items: int,
    units: list[torch.Tensor],
    knn_i: int,
    block_elements: int | None = None,
) -> torch.Tensor:
    """``cols(u)`` for every user: ``[M, n_mods·knn_i]`` item indices, duplicates across modalities set to -1.
    ``users``/``items``: the distinct training pairs."""
    ones = torch.ones(users.numel(), device=users.device)
    incidence = SparseOperator(sparse_matrix(users, items, ones, (n_users, n_items)))
    history_sums = [incidence.product(unit) for unit in units]
    k = min(knn_i, n_items)
    rows = max(1, (block_elements or BLOCK_ELEMENTS) // max(n_items, 1))
    out = []
    for start in range(0, n_users, rows):
        tops = [
            torch.topk(s[start : start + rows] @ u.T, k, dim=1).indices
            for s, u in zip(history_sums, units, strict=True)
        ]
        cols, _ = torch.cat(tops, 1).sort(1)
        repeated = torch.zeros_like(cols, dtype=torch.bool)
        repeated[:, 1:] = cols[:, 1:] == cols[:, :-1]
        out.append(cols.masked_fill(repeated, -1))
    return torch.cat(out)


def interest_pairs(
    users: torch.Tensor, items: torch.Tensor, n_items: int, cols: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distinct item pairs ``(i, j)`` with i ∈ I(u), j ∈ cols(u) for some user, and how many users give each
    (``users``/``items``: the distinct training pairs)."""
    width = cols.shape[1]
    left = items.repeat_interleave(width)
    right = cols[users].reshape(-1)
    keep = right >= 0
    keys, counts = torch.unique(left[keep] * n_items + right[keep], return_counts=True)
    return keys // n_items, keys % n_items, counts


def pair_cosines(
    unit: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, block_elements: int | None = None
) -> torch.Tensor:
    """``X̂[rows] · X̂[cols]`` row-wise, in chunks of about ``block_elements`` gathered entries."""
    chunk = max(1, (block_elements or BLOCK_ELEMENTS) // max(unit.shape[1], 1))
    parts = [
        (unit[rows[s : s + chunk]] * unit[cols[s : s + chunk]]).sum(1) for s in range(0, rows.numel(), chunk)
    ]
    return torch.cat(parts) if parts else unit.new_zeros(0)


def interest_graph(
    rows: torch.Tensor,
    cols: torch.Tensor,
    counts: torch.Tensor,
    unit: torch.Tensor,
    accumulate: bool,
    block_elements: int | None = None,
) -> SparseOperator:
    """``symnorm(interest_m)`` with ``interest_m[i, j] = S_m[i, j]`` (paper) or ``count_ij · S_m[i, j]``
    (``accumulate``, the reference code) on the interest pairs."""
    values = pair_cosines(unit, rows, cols, block_elements)
    if accumulate:
        values = values * counts.to(values.dtype)
    return normalize(rows, cols, values.float(), unit.shape[0], "sym", floor=WEIGHT_FLOOR)


def _products(units: list[torch.Tensor], items: torch.Tensor) -> torch.Tensor:
    """``P[items, :] = Π_m S_m[items, :]``: ``[len(items), N]`` (also ``P[:, items]ᵀ``, P being symmetric)."""
    product = units[0][items] @ units[0].T
    for unit in units[1:]:
        product = product * (unit[items] @ unit.T)
    return product


def second_order_edges(
    users: torch.Tensor,
    items: torch.Tensor,
    n_users: int,
    n_items: int,
    units: list[torch.Tensor],
    knn_a: int,
    variant: str = "paper",
    block_elements: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Second-order ``(users, items, weights)`` (see the module docstring) from the distinct training pairs
    ``users``/``items`` sorted by user; in ``code`` an item may repeat for a user (the weights add up when the
    graph is built)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown SOIL variant {variant!r} (choose from {', '.join(VARIANTS)})")
    if variant == "paper":
        return _attractive_unseen(users, items, n_users, n_items, units, knn_a, block_elements)
    return _top_history_entries(users, items, n_users, n_items, units, knn_a, block_elements)


def _attractive_unseen(
    train_users: torch.Tensor,
    train_items: torch.Tensor,
    n_users: int,
    n_items: int,
    units: list[torch.Tensor],
    knn_a: int,
    block_elements: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paper: per user the ``knn_a`` unseen items with the largest ``S^a = D_u^-1 R P``, computed for blocks of
    item columns (``P[:, J]`` then ``(D_u^-1 R) P[:, J]``) with a running per-user top-k."""
    device = train_users.device
    degree, _ = user_offsets(train_users, n_users)
    mean_rows = 1.0 / degree[train_users].float()
    averaging = SparseOperator(sparse_matrix(train_users, train_items, mean_rows, (n_users, n_items)))
    k = min(knn_a, n_items)
    best = torch.zeros(n_users, 0, device=device)
    best_items = torch.zeros(n_users, 0, dtype=torch.long, device=device)
    width = max(1, (block_elements or BLOCK_ELEMENTS) // max(n_items, n_users, 1))
    for start in range(0, n_items, width):
        columns = torch.arange(start, min(start + width, n_items), device=device)
        scores = averaging.product(_products(units, columns).T)
        inside = (train_items >= start) & (train_items < start + width)
        scores[train_users[inside], train_items[inside] - start] = float("-inf")
        merged = torch.cat([best, scores], 1)
        merged_items = torch.cat([best_items, columns.expand(n_users, -1)], 1)
        best, position = torch.topk(merged, min(k, merged.shape[1]), dim=1)
        best_items = merged_items.gather(1, position)
    keep = torch.isfinite(best) & (degree > 0).unsqueeze(1)
    users = torch.arange(n_users, device=device).unsqueeze(1).expand_as(best_items)
    return users[keep], best_items[keep], best[keep]


def _top_history_entries(
    users: torch.Tensor,
    items: torch.Tensor,
    n_users: int,
    n_items: int,
    units: list[torch.Tensor],
    knn_a: int,
    block_elements: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Code: the ``K_u = knn_a + |I(u)|`` largest entries of ``P[I(u), :]``. As ``|P| <= 1 = P[i, i]``, they are
    the |I(u)| history entries (weight 1) and the ``knn_a`` largest off-diagonal entries, which lie among their
    rows' top-``knn_a`` off-diagonal entries: those are computed per item (blocks of rows of P), gathered for
    every training pair and reduced per user by a segmented sort."""
    k = min(knn_a, n_items - 1)
    device = users.device
    ones = torch.ones(users.numel(), device=device)
    if k <= 0:
        return users, items, ones
    rows = max(1, (block_elements or BLOCK_ELEMENTS) // max(n_items, 1))
    top_values, top_items = [], []
    for start in range(0, n_items, rows):
        block = torch.arange(start, min(start + rows, n_items), device=device)
        product = _products(units, block)
        product[torch.arange(block.numel(), device=device), block] = float("-inf")
        values, chosen = torch.topk(product, k, dim=1)
        top_values.append(values)
        top_items.append(chosen)
    values = torch.cat(top_values)[items].reshape(-1)
    chosen = torch.cat(top_items)[items].reshape(-1)
    owner = users.repeat_interleave(k)
    order = torch.argsort(values, descending=True, stable=True)
    order = order[torch.argsort(owner[order], stable=True)]
    starts = user_offsets(users, n_users)[1] * k
    rank = torch.arange(order.numel(), device=order.device) - starts[owner[order]]
    order = order[rank < k]
    return (
        torch.cat([users, owner[order]]),
        torch.cat([items, chosen[order]]),
        torch.cat([ones, values[order]]),
    )


def second_order_operators(
    users: torch.Tensor, items: torch.Tensor, weights: torch.Tensor, n_users: int, n_items: int
) -> tuple[SparseOperator, SparseOperator]:
    """``Â₂`` (``[users; items]`` bipartite graph of the second-order weights, sym-normalised and floored) and
    its user x item block ``R̃₂`` (the same normalisation, as ``R̃`` is ``Â``'s block)."""
    u, i = users.long(), items.long() + n_users
    rows, cols = torch.cat([u, i]), torch.cat([i, u])
    values = torch.cat([weights, weights]).float()
    adjacency = normalize(rows, cols, values, n_users + n_items, "sym", floor=WEIGHT_FLOOR)
    return adjacency, bipartite_block(adjacency, n_users)
