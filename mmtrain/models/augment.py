"""Stochastic augmentations that self-supervised models use to make two views of the same representations.

- :func:`feature_dropout` (FD): zero each entry with probability ``p``; survivors are scaled by ``1/(1-p)``
  (inverted dropout, as ``nn.Dropout`` in SLMRec, BM3 and MMSSL) unless ``scale=False``.
- :func:`dropout_propagate`: a LightGCN layer mean whose every propagated layer is dropped out before it feeds
  the next one (SLMRec's FD views).
- :func:`mask_modalities` (FM) with :func:`distinct_choices`: replace whole modalities by zeros, e.g. one
  different modality per view (SLMRec's FM views).

All randomness comes from ``generator`` when one is given (else torch's global generator), so a seed fixes the
views. Everything is vectorised: one Bernoulli draw per entry, no Python loop over rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from mmtrain.graph.adjacency import SparseOperator
from mmtrain.graph.propagate import spmm


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


def feature_dropout(
    x: torch.Tensor, p: float, generator: torch.Generator | None = None, scale: bool = True
) -> torch.Tensor:
    """``x ⊙ m`` with ``m_ij ~ Bernoulli(1-p)`` i.i.d.; multiplied by ``1/(1-p)`` when ``scale`` (so the
    expectation is ``x``). ``p = 0`` returns ``x`` itself."""
    _check_rate("dropout p", p)
    if p == 0.0:
        return x
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
    out = x * keep.to(x.dtype)
    return out / (1.0 - p) if scale else out


def dropout_propagate(
    adjacency: SparseOperator,
    embeddings: torch.Tensor,
    n_layers: int,
    p: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``mean(E_0, E_1, …, E_L)`` with ``E_0 = E`` and ``E_l = FD_p(Â E_{l-1})``: the dropped-out layer is the
    one that is propagated further (layer 0 itself is not dropped)."""
    layer = embeddings.float()
    total = layer
    for _ in range(n_layers):
        layer = feature_dropout(spmm(adjacency, layer), p, generator)
        total = total + layer
    return total / (n_layers + 1)


def distinct_choices(n: int, k: int, generator: torch.Generator | None = None) -> list[int]:
    """``k`` distinct indices of ``range(n)``, an ordered draw uniform over all such tuples (e.g. the modality
    each of two views masks)."""
    if not 0 < k <= n:
        raise ValueError(f"cannot draw {k} distinct indices out of {n}")
    device = generator.device if generator is not None else None
    return torch.randperm(n, generator=generator, device=device)[:k].tolist()


def mask_modalities(inputs: Sequence[torch.Tensor], masked: Iterable[int]) -> list[torch.Tensor]:
    """The per-modality ``inputs`` with the ``masked`` positions replaced by zeros of the same shape (the
    others are returned as they are, so gradients still reach them)."""
    drop = set(masked)
    if not drop <= set(range(len(inputs))):
        raise ValueError(f"masked positions {sorted(drop)} out of range for {len(inputs)} modalities")
    return [torch.zeros_like(x) if i in drop else x for i, x in enumerate(inputs)]
