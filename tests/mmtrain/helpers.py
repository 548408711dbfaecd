"""Shared helpers of the mmtrain tests: small datasets written through mmprep's importer, fixed-score models.

mmtrain itself never imports mmprep; the tests use mmprep only to write dataset directories, exactly as a user
would before training.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mmprep.interop import import_diffmm
from mmtrain.experiment import build_model, make_config, prepare
from mmtrain.models.base import Model
from tests.paths import SHARED_DATA


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


SUBSET_ITEMS = 800


def tiktok_subset(root: Path) -> Path:
    """The TikTok (MMSSL) interactions on its first 800 items, with the real image and audio features."""
    src = SHARED_DATA / "tiktok-mmssl"
    if not src.is_dir():
        pytest.skip("../shared/data is not available")
    splits = {}
    for split, name in (("train", "trnMat.pkl"), ("val", "valMat.pkl"), ("test", "tstMat.pkl")):
        with open(src / name, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # pickled with the old scipy.sparse.coo path
            matrix = pickle.load(f).tocoo()
        keep = matrix.col < SUBSET_ITEMS
        splits[split] = list(zip(matrix.row[keep].tolist(), matrix.col[keep].tolist(), strict=True))
    n_users = max(u for pairs in splits.values() for u, _ in pairs) + 1
    features = {m: np.load(src / f"{m}_feat.npy")[:SUBSET_ITEMS] for m in ("image", "audio")}
    return write_dataset(root, splits, n_users, SUBSET_ITEMS, features)


def sym_knn(x: np.ndarray, k: int) -> np.ndarray:
    """Dense reference: top-k cosine per row (self included), values kept, ``d_i^-1/2 S_ij d_j^-1/2``."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = unit @ unit.T
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    kept = np.zeros_like(sim)
    np.put_along_axis(kept, top, np.take_along_axis(sim, top, 1), axis=1)
    return kept


def sym_norm(kept: np.ndarray) -> np.ndarray:
    d = kept.sum(1) ** -0.5
    return d[:, None] * kept * d[None, :]


def model_for(root: Path, name: str, *sets: tuple[str, object]):
    config = make_config(name, sets=[("device", "cpu"), ("seed", 3), *sets])
    data = prepare(root, config)
    return build_model(data, config), data, config


def numpy_ui(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> np.ndarray:
    """Dense ``D^-1/2 A D^-1/2`` of the bipartite training graph (zero degree -> 0)."""
    n = n_users + n_items
    a = np.zeros((n, n))
    a[users, n_users + items] = 1.0
    a[n_users + items, users] = 1.0
    degree = a.sum(1)
    d = np.where(degree > 0, degree, 1.0) ** -0.5 * (degree > 0)
    return d[:, None] * a * d[None, :]


def numpy_infonce(a: np.ndarray, b: np.ndarray, tau: float = 0.2) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    logits = a @ b.T / tau
    return float(np.mean(np.log(np.exp(logits).sum(1)) - np.diag(logits)))


class FixedScores(Model):
    """A model whose scores are a given ``[n_users, n_items]`` matrix (to test the evaluator exactly)."""

    name = "fixed-scores-test"

    def __init__(self, scores: torch.Tensor):
        torch.nn.Module.__init__(self)
        self.scores = scores.float()
        self._eval_cache = None

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scores, torch.eye(self.scores.shape[1])
