"""Shared helpers of the mmtrain tests: small datasets written through mmprep's importer, fixed-score models.

mmtrain itself never imports mmprep; the tests use mmprep only to write dataset directories, exactly as a user
would before training.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mmprep.interop import import_diffmm
from mmtrain.models.base import Model

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def write_dataset(
    root: Path,
    splits: dict[str, list[tuple[int, int]]],
    n_users: int,
    n_items: int,
    features: dict[str, np.ndarray] | None = None,
) -> Path:
    """A dataset directory at ``root`` from hand-made (user, item) pairs, via DiffMM pickles + mmprep import."""
    src = root.parent / f"{root.name}-src"
    src.mkdir(parents=True)
    names = {"train": "trnMat.pkl", "val": "valMat.pkl", "test": "tstMat.pkl"}
    for split, pairs in splits.items():
        rows = [u for u, _ in pairs]
        cols = [i for _, i in pairs]
        matrix = sp.coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=(n_users, n_items))
        with open(src / names[split], "wb") as f:
            pickle.dump(matrix, f)
    for modality, matrix in (features or {}).items():
        np.save(src / f"{modality}_feat.npy", matrix)
    return import_diffmm(src, root)


def random_dataset(
    root: Path, n_users: int = 60, n_items: int = 40, per_user: int = 8, seed: int = 0, features: bool = False
) -> Path:
    """Every user gets ``per_user`` distinct random items: the last one test, the one before val, rest train."""
    rng = np.random.default_rng(seed)
    splits: dict[str, list[tuple[int, int]]] = {"train": [], "val": [], "test": []}
    for u in range(n_users):
        items = rng.choice(n_items, per_user, replace=False)
        splits["train"] += [(u, int(i)) for i in items[:-2]]
        splits["val"].append((u, int(items[-2])))
        splits["test"].append((u, int(items[-1])))
    feats = None
    if features:
        feats = {"image": rng.normal(size=(n_items, 12)).astype(np.float32)}
        feats["audio"] = rng.normal(size=(n_items, 5)).astype(np.float32)
    return write_dataset(root, splits, n_users, n_items, feats)


class FixedScores(Model):
    """A model whose scores are a given ``[n_users, n_items]`` matrix (to test the evaluator exactly)."""

    name = "fixed-scores-test"

    def __init__(self, scores: torch.Tensor):
        torch.nn.Module.__init__(self)
        self.scores = scores.float()
        self._eval_cache = None

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scores, torch.eye(self.scores.shape[1])


@pytest.fixture(autouse=True)
def restore_torch_state():
    """mmtrain sets process-wide torch state (threads, deterministic algorithms); undo it after each test so
    the rest of the suite runs as it would alone. Autouse in every module that imports it."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
