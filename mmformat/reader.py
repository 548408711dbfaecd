"""The one strict reader of a dataset directory (docs/FORMAT.md): tables, features and graphs, each checked.

Every table is checked for its schema (the columns and types of :mod:`mmformat.layout`) and its index ranges,
every feature file's ``.npy`` header for dtype and shape against the file's size before any array is
allocated, features for NaN/inf, graphs for k rows per item. A problem raises :class:`FormatError` with one
line naming the file and, where there is one, the row. mmprep (``Dataset``, ``mmprep verify``) and mmtrain
(``DatasetDir``) both read through this class, so they accept and refuse the same directories.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmformat import layout as fmt
from mmformat.errors import FormatError
from mmformat.hashing import sha256_file
from mmformat.manifest import INT32_MAX, content_sha256, read_manifest

_FINITE_BLOCK = 1 << 22  # feature values checked for NaN/inf at once


@dataclass(frozen=True)
class Split:
    """One split's interactions as parallel arrays (int64 indices; rating/timestamp None when all null)."""

    user_idx: np.ndarray
    item_idx: np.ndarray
    rating: np.ndarray | None = None
    timestamp: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.user_idx)


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` of a ``.npy`` file, read from its header only; checks that the file
    holds exactly the bytes the header promises, so a hostile header cannot make a reader allocate."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=10000)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=10000)
            else:
                raise ValueError(f"unknown .npy version {version}")
            offset = f.tell()
    except (ValueError, OSError, SyntaxError) as e:
        raise FormatError(f"not a NumPy .npy array ({e})", path) from None
    if dtype.hasobject:
        raise FormatError("object arrays are not allowed", path)
    if fortran:
        raise FormatError("Fortran-ordered arrays are not allowed", path)
    if any(d < 0 or d > INT32_MAX for d in shape):
        raise FormatError(f"shape {shape} out of range", path)
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
    actual = path.stat().st_size - offset
    if expected != actual:
        raise FormatError(
            f"header claims shape {shape} of {dtype} ({expected} bytes) but the file holds {actual}", path
        )
    return tuple(shape), dtype, offset


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise FormatError(f"not a NumPy .npy array ({e})", path) from None


def first_nonfinite_row(matrix: np.ndarray) -> int | None:
    """Index of the first row holding NaN or inf, or None; checked in bounded blocks."""
    step = max(1, _FINITE_BLOCK // max(1, matrix.shape[1]))
    for start in range(0, matrix.shape[0], step):
        bad = ~np.isfinite(matrix[start : start + step]).all(axis=1)
        if bad.any():
            return start + int(np.argmax(bad))
    return None


class DatasetReader:
    """A dataset directory opened for reading; the manifest is read and validated on construction.

    The manifest is the truth about what the dataset holds: ``modalities()`` are the keys of
    ``manifest.features``, and :meth:`check_layout` refuses a directory whose feature files disagree with it.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.manifest: dict[str, Any] = read_manifest(self.root)

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
        return sha256_file(self.root / fmt.MANIFEST)

    def content_sha256(self) -> str:
        """:func:`mmformat.manifest.content_sha256`: the same for the same data, whenever and wherever written."""
        return content_sha256(self.manifest)

    def table(self, rel: str, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
        """Read ``rel`` after checking that it has every column of ``schema`` with that type."""
        path = self.root / rel
        if not path.is_file():
            raise FormatError("missing file", path)
        try:
            found = pq.read_schema(path)
        except (pa.ArrowInvalid, OSError) as e:
            raise FormatError(f"not a Parquet file ({e})", path) from None
        for field in schema:
            if field.name not in found.names:
                raise FormatError(f"missing column {field.name}", path)
            have = found.field(field.name).type
            if have != field.type:
                raise FormatError(f"column {field.name} is {have}, expected {field.type}", path)
        try:
            return pq.read_table(path, columns=columns or schema.names)
        except (pa.ArrowInvalid, OSError) as e:
            raise FormatError(f"unreadable Parquet file ({e})", path) from None

    def index_column(self, table: pa.Table, column: str, n: int, rel: str) -> np.ndarray:
        """``column`` as int64, refusing nulls and values outside ``[0, n)`` (the row is named, 1-based)."""
        values = table.column(column)
        if values.null_count:
            raise FormatError(f"{column} has {values.null_count} null value(s)", self.root / rel)
        arr = values.to_numpy().astype(np.int64)
        bad = np.flatnonzero((arr < 0) | (arr >= n))
        if bad.size:
            raise FormatError(
                f"{column} {arr[bad[0]]} out of range [0, {n})", self.root / rel, int(bad[0]) + 1
            )
        return arr

    def _entity_table(self, rel: str, schema: pa.Schema, n: int) -> pa.Table:
        t = self.table(rel, schema)
        idx_name = schema.names[0]
        if t.num_rows != n:
            raise FormatError(f"{t.num_rows} rows, manifest counts say {n}", self.root / rel)
        idx = self.index_column(t, idx_name, n, rel)
        wrong = np.flatnonzero(idx != np.arange(n))
        if wrong.size:
            raise FormatError(f"{idx_name} is not 0..n-1 in order", self.root / rel, int(wrong[0]) + 1)
        return t

    def users(self) -> pa.Table:
        """``users.parquet``, checked: one row per user, ``user_idx`` 0..n-1 in order."""
        return self._entity_table(fmt.USERS, fmt.USER_SCHEMA, self.n_users)

    def items(self) -> pa.Table:
        """``items.parquet``, checked: one row per item, ``item_idx`` 0..n-1 in order."""
        return self._entity_table(fmt.ITEMS, fmt.ITEM_SCHEMA, self.n_items)

    def interaction_table(self, rel: str) -> Split:
        """An interaction table (``interactions.parquet`` or a split) with its indices range-checked."""
        t = self.table(rel, fmt.INTERACTION_SCHEMA)

        def optional(name: str, dtype: Any) -> np.ndarray | None:
            c = t.column(name)
            if len(c) and c.null_count == len(c):
                return None
            return c.to_numpy(zero_copy_only=False).astype(dtype, copy=False)

        return Split(
            self.index_column(t, "user_idx", self.n_users, rel),
            self.index_column(t, "item_idx", self.n_items, rel),
            optional("rating", np.float32),
            optional("timestamp", np.int64),
        )

    def interactions(self) -> Split:
        return self.interaction_table(fmt.INTERACTIONS)

    def split_sets(self) -> list[str]:
        """Split sets present (``warm``, ``cold``): any of their files on disk (then all three are required)."""
        return [
            s
            for s in fmt.SPLIT_SETS
            if any((self.root / fmt.split_path(s, name)).is_file() for name in fmt.SPLIT_NAMES)
        ]

    def splits(self, split_set: str = "warm") -> dict[str, Split]:
        """``train``/``val``/``test`` of the ``warm`` (``splits/``) or ``cold`` (``cold/``) split set."""
        if split_set not in fmt.SPLIT_SETS:
            raise FormatError(f"unknown split set {split_set!r} (choose from {', '.join(fmt.SPLIT_SETS)})")
        if split_set not in self.split_sets():
            hint = " (run `mmprep cold-start` first)" if split_set == "cold" else ""
            raise FormatError(f"dataset has no {split_set} splits{hint}", self.root)
        return {name: self.interaction_table(fmt.split_path(split_set, name)) for name in fmt.SPLIT_NAMES}

    def cold_items(self) -> dict[str, np.ndarray]:
        """Sorted cold item indices by role (``val``, ``test``) from ``cold/cold_items.parquet``."""
        t = self.table(fmt.COLD_ITEMS, fmt.COLD_ITEM_SCHEMA)
        idx = self.index_column(t, "item_idx", self.n_items, fmt.COLD_ITEMS)
        role = np.asarray(t.column("role").to_pylist(), dtype=object)
        bad = np.flatnonzero(~np.isin(role, fmt.COLD_ROLES))
        if bad.size:
            raise FormatError(
                f"role {role[bad[0]]!r} is not val or test", self.root / fmt.COLD_ITEMS, int(bad[0]) + 1
            )
        return {r: np.sort(idx[role == r]) for r in fmt.COLD_ROLES}

    def modalities(self) -> list[str]:
        """The modalities the manifest lists under ``features``, sorted."""
        return sorted(self.manifest.get("features") or {})

    def feature_files(self) -> list[str]:
        """Modalities with a ``features/<m>.npy`` file on disk (hidden and mask files aside), sorted."""
        found = (self.root / fmt.FEATURES_DIR).glob("*.npy")
        return sorted(
            p.stem for p in found if not p.name.endswith(".mask.npy") and not p.name.startswith(".")
        )

    def layout_problems(self) -> list[str]:
        """Disagreements between ``manifest.features`` and the feature files on disk (cheap: no data read)."""
        listed, on_disk = set(self.modalities()), set(self.feature_files())
        problems = [
            f"{fmt.feature_path(m)}: listed in manifest.features but missing"
            for m in sorted(listed - on_disk)
        ]
        problems += [
            f"{fmt.feature_path(m)}: on disk but not in manifest.features" for m in sorted(on_disk - listed)
        ]
        return problems

    def check_layout(self) -> None:
        """Raise FormatError on the first :meth:`layout_problems` entry."""
        problems = self.layout_problems()
        if problems:
            raise FormatError(problems[0], self.root)

    def feature(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """``(float32 [n_items, d], bool mask [n_items])`` of one listed modality (mask all True when absent).

        The header is checked before loading; NaN or inf values are refused, naming the first bad row.
        """
        if modality not in self.modalities():
            have = ", ".join(self.modalities()) or "none"
            raise FormatError(f"dataset has no {modality!r} features (available: {have})", self.root)
        path = self.root / fmt.feature_path(modality)
        if not path.is_file():
            raise FormatError("listed in manifest.features but missing", path)
        shape, dtype, _ = npy_header(path)
        if len(shape) != 2 or shape[0] != self.n_items or shape[1] < 1:
            raise FormatError(f"shape {shape}: expected [{self.n_items}, d]", path)
        if dtype.kind != "f":
            raise FormatError(f"dtype {dtype}: expected float32", path)
        mask_file = self.root / fmt.mask_path(modality)
        if mask_file.is_file():
            mshape, mdtype, _ = npy_header(mask_file)
            if mshape != (self.n_items,) or mdtype != np.dtype(bool):
                raise FormatError(f"mask {mdtype} {mshape}: expected bool [{self.n_items}]", mask_file)
            mask = _load_npy(mask_file)
        else:
            mask = np.ones(self.n_items, dtype=bool)
        matrix = np.ascontiguousarray(_load_npy(path), dtype=np.float32)
        row = first_nonfinite_row(matrix)
        if row is not None:
            raise FormatError(f"row {row} (item_idx {row}) holds NaN or infinite values", path)
        return matrix, mask

    def graphs(self) -> dict[str, dict[int, Path]]:
        """Stored ``graphs/knn_<m>_k<k>.parquet`` files by modality and k."""
        found: dict[str, dict[int, Path]] = {}
        for path in sorted((self.root / fmt.GRAPHS_DIR).glob("knn_*.parquet")):
            match = fmt.GRAPH_FILE.fullmatch(path.name)
            if match:
                found.setdefault(match.group(1), {})[int(match.group(2))] = path
        return found

    def read_graph(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        """``(neighbour indices int64 [N, k], scores float32 [N, k])`` of a stored kNN graph, nearest first.

        Checked: schema, index ranges, exactly k rows per item with ranks 0..k-1 (k from the file name),
        finite scores.
        """
        path = Path(path) if Path(path).is_absolute() else self.root / path
        rel = path.relative_to(self.root).as_posix()
        match = fmt.GRAPH_FILE.fullmatch(path.name)
        if not match:
            raise FormatError("not a graphs/knn_<name>_k<k>.parquet file", path)
        k = int(match.group(2))
        t = self.table(rel, fmt.GRAPH_SCHEMA)
        n = self.n_items
        if t.num_rows != n * k:
            raise FormatError(f"{t.num_rows} rows: expected k={k} rows for each of {n} items", path)
        item = self.index_column(t, "item_idx", n, rel)
        neighbor = self.index_column(t, "neighbor_idx", n, rel)
        rank = t.column("rank").to_numpy(zero_copy_only=False).astype(np.int64)
        order = np.lexsort((rank, item))
        if not (
            np.array_equal(item[order], np.repeat(np.arange(n), k))
            and np.array_equal(rank[order], np.tile(np.arange(k), n))
        ):
            raise FormatError(f"items do not each have exactly {k} neighbours ranked 0..{k - 1}", path)
        score = t.column("score").to_numpy(zero_copy_only=False).astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(score))
        if bad.size:
            raise FormatError(f"score {score[bad[0]]} is not finite", path, int(bad[0]) + 1)
        return neighbor[order].reshape(n, k), score[order].reshape(n, k)
