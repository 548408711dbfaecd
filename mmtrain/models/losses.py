"""Loss building blocks shared by the models (docs/models/README.md, "Shared building blocks")."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """``−mean log σ(ŷ_ui − ŷ_uj)``, computed with the stable ``logsigmoid``."""
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def bpr_of(user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """:func:`bpr_loss` of dot-product scores: ``ŷ_ui = u·p`` against ``ŷ_uj = u·n`` row by row."""
    return bpr_loss((user * pos).sum(1), (user * neg).sum(1))


def l2_squared(*embeddings: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """L2 style (a) (LATTICE, MICRO, MGCN, MMSSL): ``Σ ½‖X‖² / B``; multiply by the model's weight."""
    batch = batch_size or embeddings[-1].shape[0]
    return sum(0.5 * e.float().pow(2).sum() for e in embeddings) / batch


def emb_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    """L2 style (b), MMRec ``EmbLoss``: ``Σ ‖X‖_F / B`` with **non-squared** Frobenius norms, B = rows of the
    last tensor; multiply by the model's ``reg_weight``."""
    return sum(torch.linalg.vector_norm(e.float()) for e in embeddings) / embeddings[-1].shape[0]


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """In-batch InfoNCE on cosine similarity: row i of ``positive`` is i's positive, the other rows negatives.

    ``mean_i −log( e^{cos(a_i,b_i)/τ} / Σ_j e^{cos(a_i,b_j)/τ} )`` (MGCN/SOIL/SLMRec form).
    """
    a = F.normalize(anchor.float(), dim=1)
    b = F.normalize(positive.float(), dim=1)
    logits = a @ b.T / temperature
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))


def _grace_rows(rows: torch.Tensor, both: torch.Tensor, tau: float) -> torch.Tensor:
    """Summed GRACE terms of the anchor rows ``rows``; ``both = [z1; z2]`` (unit rows), so the anchors are
    ``both[rows]`` and their positives ``both[rows + n]``."""
    anchors = both[rows]
    sims = anchors @ both.T / tau
    own = (anchors * anchors).sum(1) / tau
    positive = (anchors * both[rows + both.shape[0] // 2]).sum(1) / tau
    denominator = sims.exp().sum(1) - own.exp()
    return (denominator.log() - positive).sum()


def grace_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    tau: float = 0.5,
    chunk: int = 4096,
    anchors: torch.Tensor | None = None,
) -> torch.Tensor:
    """GRACE semi-loss ``z1 -> z2`` (MICRO, MMSSL): cosine ``s``, temperature ``τ``, mean over anchor rows i of::

        −log e^{s(z1_i,z2_i)/τ} / (Σ_j e^{s(z1_i,z1_j)/τ} − e^{s(z1_i,z1_i)/τ} + Σ_j e^{s(z1_i,z2_j)/τ})

    Unlike :func:`info_nce` the other rows of ``z1`` are negatives too. The anchors are all rows, or the row
    indices ``anchors`` (each still against all rows: a uniform sample gives an unbiased estimate of the full
    loss at ``len(anchors)/n`` of its cost). Computed ``chunk`` anchors at a time (checkpointed when there are
    several chunks), so one ``[chunk, 2n]`` similarity block is alive."""
    both = torch.cat([F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)])
    rows = torch.arange(z1.shape[0], device=both.device) if anchors is None else anchors
    total = torch.zeros((), device=both.device)
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        if len(rows) > chunk and torch.is_grad_enabled():
            total = total + checkpoint(_grace_rows, part, both, tau, use_reentrant=False)
        else:
            total = total + _grace_rows(part, both, tau)
    return total / len(rows)


REG_STYLES = ("emb", "l2")


def regularizer(style: str) -> Callable[..., torch.Tensor]:
    """An L2 style by name (a model hyperparameter): ``emb`` = :func:`emb_loss`, ``l2`` = :func:`l2_squared`."""
    return {"emb": emb_loss, "l2": l2_squared}[style]
