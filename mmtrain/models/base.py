"""The model base class: what a model declares, what it implements, and how the trainer talks to it.

A model is a torch-free spec in ``mmtrain/models/specs/<name>.py`` and, in ``mmtrain/models/<name>.py``, a
``@register``-ed subclass of that spec and of :class:`Model` (``class LightGCN(LightGCNSpec, Model)``):

- the spec (:class:`mmtrain.models.spec.ModelSpec`): ``name``, ``summary``, ``defaults`` (the keys ``--set``
  may change, with their types), ``choices``, ``ranges`` (:class:`mmtrain.config.Range`; the shared
  vocabulary's, e.g. ``tau > 0``, apply without being listed), ``renames`` and ``check_config(config)``
  (cross-key checks, e.g. ``head_num`` divides ``embedding_size``). All are checked when the config is
  resolved, before data loads and before torch is imported.
- ``requirements(config)``: the features (by modality), item kNN graphs and U-I adjacency it needs; checked
  against the dataset before the model is built, so a missing feature fails with one clear line. Models over
  feature matrices subclass :class:`mmtrain.models.multimodal.MultimodalModel` instead: it reads the ``modalities``
  hyperparameter, sets ``self.modalities`` and requires them plus the U-I normalisation ``ui_norm``.
- ``__init__(data, config)``: build parameters from :class:`~mmtrain.data.TrainData` (``data.feature(m)``,
  ``data.ui_adjacency(norm)``, ``data.item_knn(m, k)``).
- ``forward()``: final ``(user, item)`` representations; ``loss(batch)``: the training loss, a tensor or a dict
  with ``"loss"`` and named parts (logged); ``full_scores(users)``: ``[len(users), n_items]`` scores.
- Randomness: the trainer owns the only random generator. It passes it to ``on_epoch_start(epoch, rng)`` and
  with every batch (``batch.rng``); a model draws from it (``torch.rand(..., generator=rng)``) and never from
  torch's global generator or a generator of its own.
- Hooks: ``on_epoch_start(epoch, rng)`` (e.g. FREEDOM's edge pruning, LATTICE's graph rebuild);
  ``auxiliary_step(batch)`` runs before each main step for parts trained by the model's own optimizer (MMSSL's
  discriminator, MDMNS's denoisers), which ``main_parameters()`` then leaves out of the trainer's optimizer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mmtrain.data.loader import TrainData
from mmtrain.data.sampler import Batch
from mmtrain.errors import TrainError
from mmtrain.models.spec import ModelSpec


@dataclass(frozen=True)
class Requirements:
    """What a model needs from a dataset.

    ``features``: modalities that must exist; ``any_feature``: at least one modality must exist (the model
    uses all of them, e.g. VBPR); ``item_graphs``: ``(modality, k)`` kNN graphs (stored or computed from the
    features); ``ui_adjacency``: the U-I normalisation (``sym``, ``sym_self``, ``rw_self``, ``mean``) or None.
    """

    features: tuple[str, ...] = ()
    any_feature: bool = False
    item_graphs: tuple[tuple[str, int], ...] = ()
    ui_adjacency: str | None = None

    def check(self, data: TrainData, model: str) -> None:
        """Raise a one-line TrainError naming what is missing."""
        have = data.modalities()
        listed = ", ".join(have) or "none"
        for modality in (*self.features, *(m for m, _ in self.item_graphs)):
            if modality not in have:
                raise TrainError(
                    f"model {model} needs {modality!r} features; the dataset has: {listed}", data.root
                )
        if self.any_feature and not have:
            raise TrainError(
                f"model {model} needs item features (features/<modality>.npy); the dataset has none",
                data.root,
            )


def id_embedding(rows: int, dim: int) -> nn.Parameter:
    """A Xavier-uniform ``[rows, dim]`` ID embedding table (the ``e_U`` / ``e_I`` of every model)."""
    return nn.Parameter(nn.init.xavier_uniform_(torch.empty(rows, dim)))


class Model(ModelSpec, nn.Module):
    """Base class of all recommenders (the spec attributes come from the model's own spec, listed first among
    its bases). See the module docstring for the contract."""

    def __init__(self, data: TrainData, config: dict[str, Any]):
        super().__init__()
        self.n_users = data.n_users
        self.n_items = data.n_items
        self.config = config
        self._eval_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def requirements(cls, config: dict[str, Any]) -> Requirements:
        """Override when the model needs features, graphs or the U-I adjacency."""
        return Requirements()

    def split_nodes(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The user rows and the item rows of a stacked ``[users; items]`` tensor."""
        return nodes[: self.n_users], nodes[self.n_users :]

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final ``(user [n_users, d], item [n_items, d])`` representations."""
        raise NotImplementedError

    def loss(self, batch: Batch) -> torch.Tensor | dict[str, torch.Tensor]:
        raise NotImplementedError

    def on_epoch_start(self, epoch: int, rng: torch.Generator) -> None:
        """Called before each training epoch with the trainer's generator (no-op by default)."""

    def main_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters of the trainer's optimizer: all of them unless the model trains some itself."""
        return self.parameters()

    def auxiliary_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One update of the parts the model trains with its own optimizer, before each main step; returns the
        detached loss parts to log (none by default)."""
        return {}

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward()``, or its cached value inside :meth:`evaluation` (computed once per evaluation)."""
        return self._eval_cache if self._eval_cache is not None else self.forward()

    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for ``users``: ``z_u · z_i`` (override for other scoring functions)."""
        user_emb, item_emb = self.embeddings()
        return user_emb[users] @ item_emb.T

    @contextmanager
    def evaluation(self) -> Iterator[None]:
        """Eval mode, no gradients, and final representations computed once for all user batches."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                self._eval_cache = self.forward()
                yield
        finally:
            self._eval_cache = None
            self.train(was_training)
