"""A dataset directory (docs/FORMAT.md) loaded onto a torch device: splits, features, graphs, adjacency.

This is the only place mmtrain reads a dataset (through :class:`mmtrain.data.reader.DatasetDir`, i.e. the strict
reader of :mod:`mmformat`), so what it reads is exactly what the format document defines, and nothing else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mmtrain.data.interactions import Interactions
from mmtrain.data.reader import DatasetDir
from mmtrain.errors import TrainError
from mmtrain.graph.adjacency import SparseOperator, ui_adjacency
from mmtrain.graph.knn import knn_from_features

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; asking for CUDA without one is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


@dataclass
class TrainData:
    """Everything a model, the sampler and the evaluator need from one dataset and split set.

    ``cold_items`` (cold split set only): the val-cold and test-cold item indices. ``graph_sources``: per
    modality, where :meth:`item_knn` took its graph from (recorded in a run's ``final.json``).
    """

    dataset: DatasetDir
    split: str
    device: torch.device
    train: Interactions
    val: Interactions
    test: Interactions
    cold_items: dict[str, torch.Tensor] | None = None
    graph_sources: dict[str, dict] = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def root(self) -> Path:
        return self.dataset.root

    @property
    def n_users(self) -> int:
        return self.dataset.n_users

    @property
    def n_items(self) -> int:
        return self.dataset.n_items

    def manifest_sha256(self) -> str:
        return self.dataset.manifest_sha256()

    def content_sha256(self) -> str:
        return self.dataset.content_sha256()

    def modalities(self) -> list[str]:
        """Modalities with a feature matrix in the dataset, sorted."""
        return self.dataset.modalities()

    def feature(self, modality: str) -> torch.Tensor:
        """``features/<modality>.npy`` as float32 ``[n_items, d]`` on the device (loaded once)."""
        key = ("feature", modality)
        if key not in self._cache:
            matrix, mask = self.dataset.feature(modality)
            self._cache[key] = torch.as_tensor(matrix, device=self.device)
            self._cache[("mask", modality)] = torch.as_tensor(mask, device=self.device)
        return self._cache[key]

    def feature_mask(self, modality: str) -> torch.Tensor:
        """Boolean ``[n_items]``: True where the item really has the modality."""
        self.feature(modality)
        return self._cache[("mask", modality)]

    def ui_adjacency(self, norm: str = "sym") -> SparseOperator:
        """Normalised (M+N) x (M+N) user-item adjacency from the training pairs (cached per norm)."""
        key = ("adjacency", norm)
        if key not in self._cache:
            self._cache[key] = ui_adjacency(
                self.train.users, self.train.items, self.n_users, self.n_items, norm
            )
        return self._cache[key]

    def item_knn(self, modality: str, k: int, include_self: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(indices [N, k], cosine [N, k])`` of item ``modality``.

        A stored graph is used when one with enough neighbours exists (stored graphs exclude self; with
        ``include_self`` the item is prepended with similarity 1 and k-1 stored neighbours kept, as the
        reference code's top-k); otherwise it is computed from the features blockwise.
        """
        key = ("knn", modality, k, include_self)
        if key in self._cache:
            return self._cache[key]
        need = k - 1 if include_self else k
        stored = {kk: p for kk, p in self.dataset.graphs().get(modality, {}).items() if kk >= need}
        if stored:
            path = stored[min(stored)]
            idx_np, val_np = self.dataset.read_graph(path)
            self.graph_sources[modality] = {
                "source": "stored",
                "file": path.relative_to(self.root).as_posix(),
                "stored_k": min(stored),
                "k": k,
                "include_self": include_self,
            }
            idx = torch.as_tensor(idx_np[:, :need], device=self.device)
            val = torch.as_tensor(val_np[:, :need], device=self.device)
            if include_self:
                self_idx = torch.arange(self.n_items, device=self.device).unsqueeze(1)
                idx = torch.cat([self_idx, idx], 1)
                val = torch.cat([torch.ones_like(self_idx, dtype=val.dtype), val], 1)
        else:
            log.info("computing the %s kNN graph (k=%d) from features", modality, k)
            idx, val = knn_from_features(self.feature(modality), k, include_self=include_self)
            self.graph_sources[modality] = {"source": "computed", "k": k, "include_self": include_self}
        self._cache[key] = (idx, val)
        return idx, val


def load_data(root: str | Path, split: str = "warm", device: torch.device | str = "cpu") -> TrainData:
    """Load the ``split`` set (``warm`` or ``cold``) of a dataset directory onto ``device``."""
    device = torch.device(device)
    ds = DatasetDir(root)
    parts = ds.splits(split)
    inter = {
        name: Interactions.from_numpy(p.user_idx, p.item_idx, ds.n_users, ds.n_items, device)
        for name, p in parts.items()
    }
    cold = None
    if split == "cold":
        cold = {role: torch.as_tensor(idx, device=device) for role, idx in ds.cold_items().items()}
    data = TrainData(ds, split, device, inter["train"], inter["val"], inter["test"], cold)
    log.info(
        "%s (%s): %d users x %d items, train %d / val %d / test %d on %s",
        data.name,
        split,
        data.n_users,
        data.n_items,
        len(data.train),
        len(data.val),
        len(data.test),
        device,
    )
    return data
