"""Reader of a dataset directory as docs/FORMAT.md defines it (format_version 1), independent of mmprep.

Only what mmtrain uses is read: ``manifest.json`` (counts, feature list), the warm (``splits/``) or cold
(``cold/``) split tables, ``cold/cold_items.parquet``, ``features/<m>.npy`` (+ mask) and
``graphs/knn_<m>_k<k>.parquet``. Every table is checked for its columns and index ranges, so a broken
dataset fails with one line naming the file instead of a traceback deep inside training.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmformat.hashing import sha256_file
from mmtrain.errors import TrainError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLIT_DIRS = {"warm": "splits", "cold": "cold"}
SPLIT_NAMES = ("train", "val", "test")
COLD_ITEMS = "cold/cold_items.parquet"
FEATURES_DIR = "features"
GRAPHS_DIR = "graphs"
MODALITY = re.compile(r"[a-z0-9_]+")
GRAPH_FILE = re.compile(r"knn_([a-z0-9_]+)_k(\d+)\.parquet")


@dataclass(frozen=True)
class Pairs:
    """One split's positives as parallel int64 arrays."""

    users: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


class DatasetDir:
    """A dataset directory opened for reading; the manifest is read and checked on construction."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        path = self.root / MANIFEST
        if not self.root.is_dir():
            raise TrainError("dataset directory not found", self.root)
        if not path.is_file():
            raise TrainError("not a dataset directory (manifest.json missing)", self.root)
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TrainError(f"manifest is not valid JSON ({e})", path) from None
        if not isinstance(manifest, dict):
            raise TrainError("manifest is not a JSON object", path)
        if manifest.get("format_version") != FORMAT_VERSION:
            raise TrainError(
                f"format_version {manifest.get('format_version')!r} is not supported (mmtrain reads {FORMAT_VERSION})",
                path,
            )
        counts = manifest.get("counts") or {}
        for key in ("users", "items"):
            if not isinstance(counts.get(key), int) or counts[key] < 1:
                raise TrainError(f"counts.{key} missing or not a positive integer", path)
        self.manifest: dict[str, Any] = manifest

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.root.name)

    @property
    def n_users(self) -> int:
        return int(self.manifest["counts"]["users"])

    @property
    def n_items(self) -> int:
        return int(self.manifest["counts"]["items"])

    def manifest_sha256(self) -> str:
        return sha256_file(self.root / MANIFEST)

    def _table(self, rel: str, columns: list[str]) -> pa.Table:
        path = self.root / rel
        if not path.is_file():
            raise TrainError("missing file", path)
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowInvalid, OSError) as e:
            raise TrainError(f"not a Parquet file ({e})", path) from None
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise TrainError(f"missing column(s) {', '.join(missing)}", path)
        return pq.read_table(path, columns=columns)

    def _index_column(self, table: pa.Table, column: str, n: int, rel: str) -> np.ndarray:
        values = table.column(column)
        if values.null_count:
            raise TrainError(f"{column} has {values.null_count} null value(s)", self.root / rel)
        arr = values.to_numpy().astype(np.int64)
        bad = np.flatnonzero((arr < 0) | (arr >= n))
        if bad.size:
            raise TrainError(
                f"{column} {arr[bad[0]]} out of range [0, {n})", self.root / rel, int(bad[0]) + 1
            )
        return arr

    def split_sets(self) -> list[str]:
        """Split sets on disk (``warm``, ``cold``)."""
        return [s for s, d in SPLIT_DIRS.items() if (self.root / d / "train.parquet").is_file()]

    def splits(self, split_set: str = "warm") -> dict[str, Pairs]:
        """``train``/``val``/``test`` pairs of the ``warm`` (``splits/``) or ``cold`` (``cold/``) split set."""
        if split_set not in SPLIT_DIRS:
            raise TrainError(f"unknown split set {split_set!r} (choose warm or cold)")
        if split_set not in self.split_sets():
            hint = " (run `mmprep cold-start` first)" if split_set == "cold" else ""
            raise TrainError(f"dataset has no {split_set} splits{hint}", self.root)
        out = {}
        for name in SPLIT_NAMES:
            rel = f"{SPLIT_DIRS[split_set]}/{name}.parquet"
            t = self._table(rel, ["user_idx", "item_idx"])
            out[name] = Pairs(
                self._index_column(t, "user_idx", self.n_users, rel),
                self._index_column(t, "item_idx", self.n_items, rel),
            )
        return out

    def cold_items(self) -> dict[str, np.ndarray]:
        """Sorted cold item indices by role (``val``, ``test``) from ``cold/cold_items.parquet``."""
        t = self._table(COLD_ITEMS, ["item_idx", "role"])
        idx = self._index_column(t, "item_idx", self.n_items, COLD_ITEMS)
        role = np.asarray(t.column("role").to_pylist(), dtype=object)
        unknown = sorted({str(r) for r in role} - {"val", "test"})
        if unknown:
            raise TrainError(f"unknown role(s) {unknown} (expected val or test)", self.root / COLD_ITEMS)
        return {r: np.sort(idx[role == r]) for r in ("val", "test")}

    def modalities(self) -> list[str]:
        """Modalities with a ``features/<m>.npy`` file, sorted (the manifest may list more or fewer)."""
        found = (self.root / FEATURES_DIR).glob("*.npy")
        return sorted(
            p.stem for p in found if not p.name.endswith(".mask.npy") and MODALITY.fullmatch(p.stem)
        )

    def feature(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """``(float32 [n_items, d], bool mask [n_items])`` of one modality (mask all True when absent)."""
        path = self.root / FEATURES_DIR / f"{modality}.npy"
        if not path.is_file():
            have = ", ".join(self.modalities()) or "none"
            raise TrainError(f"dataset has no {modality!r} features (available: {have})", self.root)
        try:
            matrix = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise TrainError(f"not a NumPy .npy array ({e})", path) from None
        if matrix.ndim != 2 or matrix.shape[0] != self.n_items:
            raise TrainError(f"shape {matrix.shape}: expected [{self.n_items}, d]", path)
        mask_file = self.root / FEATURES_DIR / f"{modality}.mask.npy"
        mask = np.load(mask_file, allow_pickle=False) if mask_file.is_file() else np.ones(self.n_items, bool)
        if mask.shape != (self.n_items,):
            raise TrainError(f"mask shape {mask.shape}: expected [{self.n_items}]", mask_file)
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if not np.isfinite(matrix).all():
            raise TrainError("features contain NaN or infinite values", path)
        return matrix, mask.astype(bool, copy=False)

    def graphs(self) -> dict[str, dict[int, Path]]:
        """Stored ``graphs/knn_<m>_k<k>.parquet`` files by modality and k."""
        found: dict[str, dict[int, Path]] = {}
        for path in sorted((self.root / GRAPHS_DIR).glob("knn_*.parquet")):
            match = GRAPH_FILE.fullmatch(path.name)
            if match:
                found.setdefault(match.group(1), {})[int(match.group(2))] = path
        return found

    def read_graph(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """``(neighbour indices int64 [N, k], scores float32 [N, k])`` of a stored kNN graph, nearest first."""
        rel = str(Path(path).relative_to(self.root))
        t = self._table(rel, ["item_idx", "neighbor_idx", "score", "rank"])
        item = self._index_column(t, "item_idx", self.n_items, rel)
        neighbor = self._index_column(t, "neighbor_idx", self.n_items, rel)
        if len(item) % self.n_items:
            raise TrainError(f"{len(item)} rows: not k rows for each of {self.n_items} items", path)
        k = len(item) // self.n_items
        order = np.lexsort((t.column("rank").to_numpy(), item))
        if not np.array_equal(item[order], np.repeat(np.arange(self.n_items), k)):
            raise TrainError(f"items do not each have exactly {k} neighbours", path)
        score = t.column("score").to_numpy().astype(np.float32)
        return neighbor[order].reshape(self.n_items, k), score[order].reshape(self.n_items, k)
