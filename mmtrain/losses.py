"""Loss building blocks shared by the models (reference/models.md, common notation)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """``−mean log σ(ŷ_ui − ŷ_uj)``, computed with the stable ``logsigmoid``."""
    return -F.logsigmoid(pos_scores - neg_scores).mean()


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


REG_STYLES = ("emb", "l2")


def regularizer(style: str) -> Callable[..., torch.Tensor]:
    """An L2 style by name (a model hyperparameter): ``emb`` = :func:`emb_loss`, ``l2`` = :func:`l2_squared`."""
    return {"emb": emb_loss, "l2": l2_squared}[style]
