"""Write a dataset directory atomically (docs/FORMAT.md)."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mmformat import layout as fmt
from mmformat.atomic import (
    ROW_GROUP_ROWS,
    atomic_dir,
    replace_dir,
    replace_many,
    save_npy,
    temp_dir,
    write_parquet,
    write_parquet_tables,
)
from mmformat.update import dataset_update
from mmprep.dataset.manifest import created_by, write_manifest
from mmprep.sort import argsort_distinct


def user_item_order(user_idx: np.ndarray, item_idx: np.ndarray, distinct: bool = False) -> np.ndarray:
    """The row order by ``(user_idx, item_idx)``, ties by row: what ``np.lexsort((item_idx, user_idx))`` gives,
    from one stable argsort of an int64 ``user * n_items + item`` key (half lexsort's time).

    ``distinct=True`` promises that no pair repeats (a deduplicated build): without ties there is one order,
    found bucket by bucket (:func:`~mmprep.sort.argsort_distinct`), several times faster than the stable
    argsort on 30.8M pairs.
    """
    user_idx = np.asarray(user_idx)
    item_idx = np.asarray(item_idx)
    if len(user_idx) == 0:
        return np.zeros(0, dtype=np.int64)
    key = user_idx.astype(np.int64)
    key *= int(item_idx.max()) + 1
    key += item_idx
    return argsort_distinct(key) if distinct else np.argsort(key, kind="stable")


def interactions_table(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    rating: np.ndarray | None = None,
    timestamp: np.ndarray | None = None,
    order: np.ndarray | None = None,
) -> pa.Table:
    """An interaction table in the canonical schema, sorted by (user_idx, item_idx).

    ``order``: the rows to take, already in that order (all of them from :func:`user_item_order`, or a subset
    of its result, which stays in order): several tables cut from one sort.
    """
    user_idx = np.asarray(user_idx, dtype=np.int32)
    item_idx = np.asarray(item_idx, dtype=np.int32)
    if order is None:
        order = user_item_order(user_idx, item_idx)
    n = len(order)
    rating_col = (
        pa.nulls(n, pa.float32()) if rating is None else pa.array(np.asarray(rating, np.float32)[order])
    )
    ts_col = (
        pa.nulls(n, pa.int64()) if timestamp is None else pa.array(np.asarray(timestamp, np.int64)[order])
    )
    return pa.table(
        [pa.array(user_idx[order]), pa.array(item_idx[order]), rating_col, ts_col],
        schema=fmt.INTERACTION_SCHEMA,
    )


PIECE_ROWS = 4 * ROW_GROUP_ROWS  # whole row groups: pieces written one after another keep the bytes


def interaction_pieces(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    rating: np.ndarray | None,
    timestamp: np.ndarray | None,
    order: np.ndarray,
    piece_rows: int = PIECE_ROWS,
) -> Iterator[pa.Table]:
    """:func:`interactions_table` of the rows ``order`` in consecutive pieces of ``piece_rows`` rows (at least
    one piece, so an empty table still has its schema): written one after another they give the same Parquet
    bytes as the whole table (whole row groups per piece) while only a piece's gathered columns are in memory
    (the 100M-review build's interaction and train tables: 617 and 470 MB at once otherwise)."""
    if piece_rows % ROW_GROUP_ROWS:
        raise ValueError(f"piece_rows must be a multiple of {ROW_GROUP_ROWS} rows, got {piece_rows}")
    for start in range(0, max(len(order), 1), piece_rows):
        yield interactions_table(
            user_idx, item_idx, rating, timestamp, order=order[start : start + piece_rows]
        )


def users_table(user_ids: list[str] | np.ndarray | pa.Array) -> pa.Table:
    ids = (
        pa.array(user_ids, type=pa.string())
        if not isinstance(user_ids, pa.Array)
        else user_ids.cast(pa.string())
    )
    return pa.table([pa.array(np.arange(len(ids), dtype=np.int32)), ids], schema=fmt.USER_SCHEMA)


def items_table(item_ids: list[str] | np.ndarray | pa.Array, fields: pa.Table | None = None) -> pa.Table:
    """Item table; ``fields`` (same row order as ``item_ids``) may carry any of the text/image columns."""
    ids = (
        pa.array(item_ids, type=pa.string())
        if not isinstance(item_ids, pa.Array)
        else item_ids.cast(pa.string())
    )
    n = len(ids)
    cols = [pa.array(np.arange(n, dtype=np.int32)), ids]
    for field in list(fmt.ITEM_SCHEMA)[2:]:
        if fields is not None and field.name in fields.column_names:
            cols.append(fields.column(field.name).combine_chunks().cast(field.type))
        else:
            cols.append(pa.nulls(n, field.type))
    return pa.table(cols, schema=fmt.ITEM_SCHEMA)


def write_feature(root: Path, modality: str, matrix: np.ndarray, mask: np.ndarray) -> None:
    """Write ``features/<modality>.npy`` (float32) and its boolean presence mask, both or neither."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if matrix.ndim != 2 or mask.shape != (matrix.shape[0],):
        raise ValueError(f"feature {modality}: matrix {matrix.shape} and mask {mask.shape} do not align")
    replace_many(
        {
            Path(root) / fmt.feature_path(modality): lambda tmp: save_npy(tmp, matrix),
            Path(root) / fmt.mask_path(modality): lambda tmp: save_npy(tmp, mask),
        }
    )


def write_split_set(root: Path, split_set: str, splits: dict[str, pa.Table]) -> None:
    for name in fmt.SPLIT_NAMES:
        write_split(root, split_set, name, splits[name])


def write_split(root: Path, split_set: str, name: str, table: pa.Table | Iterable[pa.Table]) -> None:
    """One split file (``train``, ``val`` or ``test``) of a split set, from one table or from consecutive
    pieces of it (:func:`interaction_pieces`)."""
    _write_interactions(Path(root) / fmt.split_path(split_set, name), table)


def _write_interactions(path: Path, table: pa.Table | Iterable[pa.Table]) -> None:
    if isinstance(table, pa.Table):
        write_parquet(path, table)
    else:
        write_parquet_tables(path, fmt.INTERACTION_SCHEMA, table)


class DatasetWriter(AbstractContextManager):
    """Collects a new dataset in a temporary directory and renames it to ``out`` when the block succeeds.

    Fill ``manifest`` (name, sources, params, counts, ...) while writing; ``files`` and
    ``format_version`` are filled in on close.
    """

    def __init__(self, out: Path, overwrite: bool = False):
        self.out = Path(out)
        self._ctx = atomic_dir(self.out, overwrite=overwrite)
        self.root: Path = Path()
        self.manifest: dict[str, Any] = {"created_by": created_by()}

    def __enter__(self) -> DatasetWriter:
        self.root = self._ctx.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        if exc_type is None:
            try:
                write_manifest(self.root, self.manifest)
            except BaseException as e:
                return self._ctx.__exit__(type(e), e, e.__traceback__)
        return self._ctx.__exit__(exc_type, exc, tb)

    def users(self, user_ids) -> None:
        write_parquet(self.root / fmt.USERS, users_table(user_ids))

    def items(self, item_ids, fields: pa.Table | None = None) -> None:
        write_parquet(self.root / fmt.ITEMS, items_table(item_ids, fields))

    def interactions(self, table: pa.Table | Iterable[pa.Table]) -> None:
        """The interaction table, whole or in consecutive pieces (:func:`interaction_pieces`)."""
        _write_interactions(self.root / fmt.INTERACTIONS, table)

    def split_set(self, split_set: str, splits: dict[str, pa.Table]) -> None:
        write_split_set(self.root, split_set, splits)

    def split(self, split_set: str, name: str, table: pa.Table | Iterable[pa.Table]) -> None:
        """One split of a split set (to write the three one at a time: one table in memory, not three)."""
        write_split(self.root, split_set, name, table)

    def feature(self, modality: str, matrix: np.ndarray, mask: np.ndarray) -> None:
        write_feature(self.root, modality, matrix, mask)


def update_dataset(root: Path, subdir: str, write, manifest_update: dict[str, Any]) -> None:
    """Add or replace one sub-directory of an existing dataset atomically, then refresh its manifest.

    Runs under :func:`mmformat.update.dataset_update` (lock, the other files checked against the manifest
    first). ``write(tmpdir)`` fills a temporary directory that replaces ``root/subdir``; ``manifest_update``
    is merged (top-level keys) into the manifest, which is rewritten last with only the new files hashed.
    """
    root = Path(root)
    with dataset_update(root, replacing=[f"{subdir}/"]) as update:
        tmp = temp_dir(root, subdir)
        try:
            write(tmp)
            written = [
                f"{subdir}/{p.relative_to(tmp).as_posix()}" for p in sorted(tmp.rglob("*")) if p.is_file()
            ]
            replace_dir(tmp, root / subdir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        update.manifest.update(manifest_update)
        update.wrote(*written)
        update.replaced_dirs.append(subdir)
