"""Pieces shared by the importers and exporters: feature files, id maps, and assembling a dataset from splits.

Importers read a foreign layout into an :class:`ImportedDataset` (three splits as index arrays, optional raw
ids and features); :func:`write_imported` turns it into a dataset directory (docs/FORMAT.md) without changing
the splits. Exporters read a dataset with :func:`load_for_export` and write foreign files into a temporary
directory that is renamed into place (:func:`export_dir`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pv

from mmformat import layout as fmt
from mmformat.atomic import atomic_dir
from mmformat.hashing import describe_file
from mmprep.dataset.reader import Split, load_dataset
from mmprep.dataset.writer import DatasetWriter, interactions_table
from mmprep.errors import PrepError
from mmprep.filter.kcore import dedupe_first

log = logging.getLogger(__name__)

FEATURE_SUFFIX = "_feat.npy"
_MODALITY = re.compile(r"^[a-z0-9_]+$")


@dataclass
class Feature:
    """A feature matrix read from a foreign ``<modality>_feat.npy`` (already float32)."""

    matrix: np.ndarray
    source: Path
    original_dtype: str


@dataclass
class ImportedDataset:
    """Everything an importer read; ``user_ids``/``item_ids`` are raw ids by index, or None (decimal index)."""

    fmt: str
    name: str
    src_dir: Path
    n_users: int
    n_items: int
    splits: dict[str, Split]
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None
    features: dict[str, Feature] = field(default_factory=dict)
    files: list[tuple[Path, str]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)


def require_file(path: Path) -> Path:
    if not Path(path).is_file():
        raise PrepError("missing file", path)
    return Path(path)


def check_src_dir(src_dir: Path) -> Path:
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise PrepError("source directory not found", src_dir)
    return src_dir


def check_range(values: np.ndarray, n: int, what: str, path: Path, limit_from: str = "") -> None:
    """Raise when an index is outside ``0 .. n-1``; ``limit_from`` says where ``n`` came from."""
    if len(values) == 0:
        return
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        raise PrepError(f"{what} id {bad} out of range 0..{n - 1}{limit_from}", path)


# An index space without an id map is sized by its largest id: bound it before anything of that size is
# allocated, by what int32 indices hold and by a generous multiple of the records that use it.
MAX_INDEX = 2**31 - 1
IDS_PER_RECORD = 64
MIN_ID_BOUND = 1_000_000


def id_bound(n_records: int) -> int:
    """The largest index space accepted for ``n_records`` records without an id map."""
    return min(MAX_INDEX, max(IDS_PER_RECORD * n_records, MIN_ID_BOUND))


def size_from_ids(
    values: np.ndarray, n_records: int, what: str, path: Path, where: str = "", line: int | None = None
) -> int:
    """``max id + 1`` for ids without a map, refused (one line) when it would ask for an absurd allocation.

    ``where`` names the record holding the largest id when there is no line number (e.g. ``" (user 12)"``).
    """
    if len(values) == 0:
        return 0
    top = int(values.max())
    bound = id_bound(n_records)
    if top >= bound:
        raise PrepError(
            f"{what} id {top}{where} is too large for {n_records:,} records without a {what} id map "
            f"(ids must be below {bound:,}; renumber them or add the map)",
            path,
            line,
        )
    return top + 1


def ids_from_map(raw: np.ndarray, idx: np.ndarray, what: str, path: Path) -> np.ndarray:
    """Raw ids ordered by index; the map must number its entries exactly ``0 .. len-1`` with unique raw ids."""
    idx = np.asarray(idx, dtype=np.int64)
    n = len(idx)
    check_range(idx, n, what, path, f" (the map has {n} entries, so ids must be 0..{n - 1})")
    if len(np.unique(idx)) != n:
        raise PrepError(f"{what} ids are not unique", path)
    raw = np.asarray(raw, dtype=object)
    if len(np.unique(raw.astype(str))) != n:
        raise PrepError(f"raw {what} ids are not unique", path)
    out = np.empty(n, dtype=object)
    out[idx] = raw
    return out


def load_features(directory: Path, n_items: int) -> dict[str, Feature]:
    """Every ``<modality>_feat.npy`` in ``directory`` as float32, checked to have ``n_items`` rows."""
    features: dict[str, Feature] = {}
    for path in sorted(Path(directory).glob(f"*{FEATURE_SUFFIX}")):
        modality = path.name[: -len(FEATURE_SUFFIX)]
        if not _MODALITY.match(modality):
            log.warning("%s: ignored (modality name must match [a-z0-9_]+)", path)
            continue
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise PrepError(f"not a plain .npy array ({e})", path) from None
        if array.ndim != 2 or array.dtype.kind not in "fiu":
            raise PrepError(f"expected a 2-D numeric matrix, found shape {array.shape} {array.dtype}", path)
        if array.shape[0] != n_items:
            raise PrepError(f"feature rows {array.shape[0]} != {n_items} items", path)
        matrix = array.astype(np.float32)
        bad_rows = int((~np.isfinite(matrix)).any(axis=1).sum())
        if bad_rows:
            raise PrepError(f"{bad_rows} rows contain NaN or infinite values", path)
        features[modality] = Feature(matrix=matrix, source=path, original_dtype=str(array.dtype))
    return features


def _dedupe(split: Split, n_items: int) -> tuple[Split, int]:
    """Keep the first occurrence of each (user, item) pair; returns the split and how many rows were dropped."""
    first = dedupe_first(split.user_idx, split.item_idx, n_items)
    if len(first) == len(split.user_idx):
        return split, 0
    return (
        Split(
            user_idx=split.user_idx[first],
            item_idx=split.item_idx[first],
            rating=None if split.rating is None else split.rating[first],
            timestamp=None if split.timestamp is None else split.timestamp[first],
        ),
        len(split.user_idx) - len(first),
    )


def _concat(splits: list[Split]) -> Split:
    def cat(name: str) -> np.ndarray | None:
        parts = [getattr(s, name) for s in splits]
        return None if any(p is None for p in parts) else np.concatenate(parts)

    return Split(
        user_idx=np.concatenate([s.user_idx for s in splits]),
        item_idx=np.concatenate([s.item_idx for s in splits]),
        rating=cat("rating"),
        timestamp=cat("timestamp"),
    )


def split_violations(splits: dict[str, Split], n_users: int, n_items: int) -> dict[str, int]:
    """How the imported splits break the warm guarantees of docs/FORMAT.md (reported, never repaired)."""
    train, val, test = (splits[n] for n in fmt.SPLIT_NAMES)
    eval_u = np.concatenate([val.user_idx, test.user_idx])
    eval_i = np.concatenate([val.item_idx, test.item_idx])
    has_train_u = np.bincount(train.user_idx, minlength=n_users) > 0
    has_train_i = np.bincount(train.item_idx, minlength=n_items) > 0
    in_eval_u = np.bincount(eval_u, minlength=n_users) > 0
    in_eval_i = np.bincount(eval_i, minlength=n_items) > 0
    keys = np.concatenate([s.user_idx.astype(np.int64) * n_items + s.item_idx for s in (train, val, test)])
    return {
        "users_without_train": int((in_eval_u & ~has_train_u).sum()),
        "items_only_in_eval": int((in_eval_i & ~has_train_i).sum()),
        "pairs_in_several_splits": int(len(keys) - len(np.unique(keys))),
    }


def _source_entry(path: Path, src_dir: Path, role: str) -> dict[str, Any]:
    try:
        entry = describe_file(path, src_dir)
    except ValueError:
        entry = describe_file(path)
    return {**entry, "role": role}


def _ids_or_index(ids: np.ndarray | None, n: int) -> pa.Array:
    if ids is None:
        return pa.array(np.arange(n).astype(str), pa.string())
    return pa.array(ids.astype(str), pa.string())


def write_imported(data: ImportedDataset, out: Path, overwrite: bool = False) -> Path:
    """Write ``data`` as a dataset directory at ``out`` (atomically); the splits are kept as imported."""
    splits, duplicates = {}, 0
    for name in fmt.SPLIT_NAMES:
        splits[name], dropped = _dedupe(data.splits[name], data.n_items)
        duplicates += dropped
    skipped = dict(data.skipped)
    if duplicates:
        skipped["duplicates"] = duplicates
        log.warning("%s: dropped %d repeated (user, item) pairs inside a split", data.src_dir, duplicates)
    union, _ = _dedupe(_concat([splits[n] for n in fmt.SPLIT_NAMES]), data.n_items)
    violations = split_violations(splits, data.n_users, data.n_items)
    if any(violations.values()):
        found = ", ".join(f"{k}={v}" for k, v in violations.items() if v)
        log.info("%s: imported splits break the warm guarantees (%s); kept as they are", data.src_dir, found)
    out = Path(out)
    with DatasetWriter(out, overwrite=overwrite) as w:
        w.users(_ids_or_index(data.user_ids, data.n_users))
        w.items(_ids_or_index(data.item_ids, data.n_items))
        w.interactions(interactions_table(union.user_idx, union.item_idx, union.rating, union.timestamp))
        w.split_set(
            "warm",
            {n: interactions_table(s.user_idx, s.item_idx, s.rating, s.timestamp) for n, s in splits.items()},
        )
        features = {}
        for modality, feat in data.features.items():
            w.feature(modality, feat.matrix, np.ones(data.n_items, dtype=bool))
            features[modality] = {
                "dim": int(feat.matrix.shape[1]),
                "dtype": "float32",
                "present": data.n_items,
                "fill": "none",
                "source": feat.source.name,
                "original_dtype": feat.original_dtype,
            }
        w.manifest.update(
            {
                "name": data.name,
                "source": {
                    "format": f"import-{data.fmt}",
                    "files": [_source_entry(p, data.src_dir, role) for p, role in data.files],
                },
                "params": {"format": data.fmt, "src_dir": str(data.src_dir), **data.params},
                "counts": {"users": data.n_users, "items": data.n_items, "interactions": len(union)},
                "skipped": {"counts": dict(sorted(skipped.items())), "examples": []},
                "splits": {
                    "warm": {
                        "method": "imported",
                        "source_format": data.fmt,
                        "counts": {n: len(s) for n, s in splits.items()},
                        "violations": violations,
                    }
                },
                "features": features,
            }
        )
    log.info("imported %s into %s", data.src_dir, out)
    return out


def read_json(path: Path) -> Any:
    path = require_file(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise PrepError(f"invalid JSON ({e.msg})", path, e.lineno) from None
    except UnicodeDecodeError as e:
        raise PrepError(f"not UTF-8 text ({e.reason} at byte {e.start})", path) from None


def int_array(values: list, what: str, path: Path) -> np.ndarray:
    """A list of JSON integers as int64; anything else (strings, floats, nested lists) is a PrepError."""
    if not values:
        return np.zeros(0, dtype=np.int64)
    try:
        array = np.asarray(values)
    except (ValueError, OverflowError):
        array = np.asarray(values, dtype=object)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        bad = next((v for v in values if type(v) is not int), values[0])
        raise PrepError(f"{what} must be integers, found {bad!r}", path)
    return array.astype(np.int64)


# ----------------------------------------------------------------------------------------------- export side


@dataclass
class ExportData:
    """One split set of a dataset, ready to be written in a foreign layout."""

    name: str
    n_users: int
    n_items: int
    splits: dict[str, Split]
    user_ids: np.ndarray
    item_ids: np.ndarray
    features: dict[str, np.ndarray]


def load_for_export(dataset_dir: Path, split_set: str = "warm") -> ExportData:
    """Read the splits of ``split_set``, the raw ids and every feature matrix of a dataset."""
    ds = load_dataset(dataset_dir)
    splits = ds.splits(split_set)
    features = {m: ds.feature(m)[0] for m in ds.modalities()}
    return ExportData(
        name=ds.name,
        n_users=ds.n_users,
        n_items=ds.n_items,
        splits=splits,
        user_ids=ds.users.column("user_id").to_numpy(zero_copy_only=False).astype(object),
        item_ids=ds.items.column("item_id").to_numpy(zero_copy_only=False).astype(object),
        features=features,
    )


@contextmanager
def export_dir(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """A temporary directory renamed to ``out`` only when the export completes."""
    with atomic_dir(Path(out), overwrite=overwrite) as tmp:
        yield tmp


def write_feature_files(root: Path, features: dict[str, np.ndarray]) -> None:
    """``<modality>_feat.npy`` (float32, row i = item i) for every modality."""
    for modality, matrix in features.items():
        np.save(Path(root) / f"{modality}{FEATURE_SUFFIX}", np.ascontiguousarray(matrix, dtype=np.float32))


def write_tsv(path: Path, header: list[str] | None, table: pa.Table) -> None:
    """A tab-separated file without quoting (the foreign loaders split on tabs)."""
    try:
        with open(path, "wb") as f:
            if header is not None:
                f.write(("\t".join(header) + "\n").encode("utf-8"))
            pv.write_csv(
                table, f, pv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
            )
    except pa.ArrowInvalid as e:
        raise PrepError(
            f"cannot write without quoting (an id contains a tab or newline): {e}", path
        ) from None


def id_map_table(raw_ids: np.ndarray) -> pa.Table:
    """``raw \\t index`` rows for an id map file."""
    return pa.table(
        {
            "raw": pa.array(raw_ids.astype(str), pa.string()),
            "idx": pa.array(np.arange(len(raw_ids)), pa.int64()),
        }
    )


def check_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise PrepError(f"invalid dataset name {name!r} (it becomes a file name)")
    return name
