"""Read and verify a dataset directory (docs/FORMAT.md). Used by mmprep and by mmtrain."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmformat import layout as fmt
from mmformat.hashing import sha256_file
from mmprep.dataset.manifest import read_manifest
from mmprep.errors import PrepError


@dataclass
class Split:
    """One split (train, val or test) as parallel int arrays."""

    user_idx: np.ndarray
    item_idx: np.ndarray
    rating: np.ndarray | None = None
    timestamp: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.user_idx)


@dataclass
class Dataset:
    """A loaded dataset directory. Tables are read lazily; arrays are numpy."""

    root: Path
    manifest: dict[str, Any]
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.manifest.get("name", self.root.name)

    @property
    def n_users(self) -> int:
        return int(self.manifest["counts"]["users"])

    @property
    def n_items(self) -> int:
        return int(self.manifest["counts"]["items"])

    def _table(self, rel: str) -> pa.Table:
        if rel not in self._cache:
            path = self.root / rel
            if not path.is_file():
                raise PrepError("missing file", path)
            self._cache[rel] = pq.read_table(path)
        return self._cache[rel]

    @property
    def users(self) -> pa.Table:
        return self._table(fmt.USERS)

    @property
    def items(self) -> pa.Table:
        return self._table(fmt.ITEMS)

    def interactions(self) -> Split:
        return _to_split(self._table(fmt.INTERACTIONS))

    def split_sets(self) -> list[str]:
        """Split sets present on disk (``warm``, ``cold``)."""
        return [s for s in fmt.SPLIT_SETS if (self.root / fmt.split_path(s, "train")).is_file()]

    def splits(self, split_set: str = "warm") -> dict[str, Split]:
        """``{"train", "val", "test"}`` of the ``warm`` (``splits/``) or ``cold`` (``cold/``) split set."""
        if split_set not in fmt.SPLIT_SETS:
            raise PrepError(f"unknown split set {split_set!r} (choose from {', '.join(fmt.SPLIT_SETS)})")
        if split_set not in self.split_sets():
            hint = " (run `mmprep cold-start` first)" if split_set == "cold" else ""
            raise PrepError(f"dataset has no {split_set} splits{hint}", self.root)
        return {name: _to_split(self._table(fmt.split_path(split_set, name))) for name in fmt.SPLIT_NAMES}

    def cold_items(self) -> dict[str, np.ndarray]:
        """Cold item indices by role (``val``, ``test``)."""
        t = self._table(fmt.COLD_ITEMS)
        role = np.asarray(t.column("role").to_pylist())
        idx = t.column("item_idx").to_numpy()
        return {r: np.sort(idx[role == r]) for r in ("val", "test")}

    def modalities(self) -> list[str]:
        return sorted(self.manifest.get("features", {}))

    def feature(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """``(matrix float32 [n_items, d], mask bool [n_items])`` of one modality."""
        path = self.root / fmt.feature_path(modality)
        if not path.is_file():
            have = ", ".join(self.modalities()) or "none"
            raise PrepError(f"dataset has no {modality!r} features (available: {have})", self.root)
        matrix = np.load(path)
        mask_file = self.root / fmt.mask_path(modality)
        mask = np.load(mask_file) if mask_file.is_file() else np.ones(matrix.shape[0], dtype=bool)
        if matrix.shape[0] != self.n_items or mask.shape != (self.n_items,):
            raise PrepError(f"feature rows {matrix.shape[0]} != {self.n_items} items", path)
        return matrix.astype(np.float32, copy=False), mask.astype(bool, copy=False)


def _to_split(t: pa.Table) -> Split:
    def col(name: str, dtype) -> np.ndarray | None:
        c = t.column(name)
        if c.null_count == len(c) and len(c) > 0:
            return None
        return c.to_numpy(zero_copy_only=False).astype(dtype, copy=False)

    return Split(
        user_idx=t.column("user_idx").to_numpy().astype(np.int64),
        item_idx=t.column("item_idx").to_numpy().astype(np.int64),
        rating=col("rating", np.float32) if "rating" in t.column_names else None,
        timestamp=col("timestamp", np.int64) if "timestamp" in t.column_names else None,
    )


def load_dataset(root: str | Path) -> Dataset:
    """Open a dataset directory (reads the manifest; data is loaded on first use)."""
    root = Path(root)
    return Dataset(root=root, manifest=read_manifest(root))


def verify_dataset(root: str | Path, check_hashes: bool = True) -> list[str]:
    """Check a dataset against docs/FORMAT.md; returns a list of problems (empty when valid)."""
    root = Path(root)
    problems: list[str] = []
    ds = load_dataset(root)
    for entry in ds.manifest.get("files", []):
        path = root / entry["path"]
        if not path.is_file():
            problems.append(f"{entry['path']}: listed in manifest but missing")
        elif check_hashes and sha256_file(path) != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 differs from manifest")
    for rel, schema in ((fmt.USERS, fmt.USER_SCHEMA), (fmt.ITEMS, fmt.ITEM_SCHEMA)):
        t = ds._table(rel)
        if not t.schema.equals(schema):
            problems.append(f"{rel}: schema {t.schema} != {schema}")
        idx = t.column(0).to_numpy()
        if not np.array_equal(idx, np.arange(len(idx))):
            problems.append(f"{rel}: {t.column_names[0]} is not 0..n-1 in order")
    if ds.users.num_rows != ds.n_users or ds.items.num_rows != ds.n_items:
        problems.append("users/items row counts differ from manifest counts")
    for split_set in ds.split_sets():
        for name, s in ds.splits(split_set).items():
            if len(s) and (
                s.user_idx.max() >= ds.n_users or s.item_idx.max() >= ds.n_items or s.user_idx.min() < 0
            ):
                problems.append(f"{fmt.split_path(split_set, name)}: index out of range")
    for modality in ds.modalities():
        try:
            ds.feature(modality)
        except PrepError as e:
            problems.append(str(e))
    return problems
