"""MMRec layout: ``<name>.inter`` (TSV ``userID itemID rating timestamp x_label``), optional id maps
``u_id_mapping.csv`` (``user_id\\tuserID``) and ``i_id_mapping.csv`` (``asin\\titemID``), and ``<modality>_feat.npy``.

``x_label`` is 0 train, 1 val, 2 test. Only ``userID``, ``itemID`` and ``x_label`` are required (they are all
MMRec reads); ``rating`` and ``timestamp`` are kept when present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from mmformat.layout import SPLIT_NAMES
from mmprep.dataset.reader import Split
from mmprep.errors import PrepError
from mmprep.interop.common import (
    ImportedDataset,
    check_name,
    check_range,
    check_src_dir,
    export_dir,
    id_map_table,
    ids_from_map,
    load_features,
    load_for_export,
    size_from_ids,
    write_feature_files,
    write_imported,
    write_tsv,
)
from mmprep.interop.delimited import read_delimited

INTER_COLUMNS = ["userID", "itemID", "rating", "timestamp", "x_label"]
USER_MAP = ("u_id_mapping.csv", "user_id", "userID")
ITEM_MAP = ("i_id_mapping.csv", "asin", "itemID")


def _find_inter(src_dir: Path, inter_file: str | None) -> Path:
    if inter_file:
        path = src_dir / inter_file
        if not path.is_file():
            raise PrepError("missing file", path)
        return path
    found = sorted(src_dir.glob("*.inter"))
    if not found:
        raise PrepError("no *.inter file found (MMRec layout expects <name>.inter)", src_dir)
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise PrepError(f"several .inter files ({names}); choose one with --inter-file", src_dir)
    return found[0]


def _read_map(src_dir: Path, spec: tuple[str, str, str], what: str) -> tuple[np.ndarray, Path] | None:
    name, _, index_col = spec
    path = src_dir / name
    if not path.is_file():
        return None
    table = read_delimited(path, header=True, required=(index_col,))
    raw_col = next((c for c in table.names if c != index_col), None)
    if raw_col is None:
        raise PrepError(f"no raw id column besides {index_col}", path)
    raw = np.asarray(table.columns[raw_col].to_pylist(), dtype=object)
    return ids_from_map(raw, table.ints(index_col), what, path), path


def read_mmrec(src_dir: Path, inter_file: str | None = None) -> ImportedDataset:
    """Read an MMRec dataset directory (see the module docstring)."""
    src_dir = check_src_dir(src_dir)
    inter_path = _find_inter(src_dir, inter_file)
    inter = read_delimited(inter_path, header=True, required=("userID", "itemID", "x_label"))
    users, items, label = inter.ints("userID"), inter.ints("itemID"), inter.ints("x_label")
    bad = np.flatnonzero(label > 2)
    if bad.size:
        raise PrepError(f"x_label {label[bad[0]]} is not 0, 1 or 2", inter_path, int(inter.lines[bad[0]]))
    rating = inter.optional_floats("rating")
    timestamp = inter.optional_ints("timestamp")
    files = [(inter_path, "interactions")]
    ids: dict[str, np.ndarray | None] = {}
    sizes: dict[str, int] = {}
    for what, spec, values in (("user", USER_MAP, users), ("item", ITEM_MAP, items)):
        found = _read_map(src_dir, spec, what)
        if found is None:
            line = int(inter.lines[int(values.argmax())]) if len(values) else None
            ids[what] = None
            sizes[what] = size_from_ids(values, len(values), what, inter_path, line=line)
            continue
        ids[what], map_path = found
        sizes[what] = len(ids[what])
        files.append((map_path, f"{what}_ids"))
        check_range(values, sizes[what], what, inter_path, f" ({map_path.name} has {sizes[what]} {what}s)")
    splits = {}
    for code, name in enumerate(SPLIT_NAMES):
        rows = label == code
        splits[name] = Split(
            user_idx=users[rows],
            item_idx=items[rows],
            rating=None if rating is None else rating[rows],
            timestamp=None if timestamp is None else timestamp[rows],
        )
    features = load_features(src_dir, sizes["item"])
    files += [(f.source, f"feature:{m}") for m, f in features.items()]
    return ImportedDataset(
        fmt="mmrec",
        name=inter_path.stem,
        src_dir=src_dir,
        n_users=sizes["user"],
        n_items=sizes["item"],
        splits=splits,
        user_ids=ids["user"],
        item_ids=ids["item"],
        features=features,
        files=files,
        params={"inter_file": inter_path.name},
    )


def import_mmrec(
    src_dir: Path, out: Path, name: str | None = None, overwrite: bool = False, inter_file: str | None = None
) -> Path:
    """Import an MMRec dataset directory as a dataset at ``out``; returns ``out``."""
    data = read_mmrec(Path(src_dir), inter_file=inter_file)
    if name:
        data.name = name
    return write_imported(data, out, overwrite=overwrite)


def export_mmrec(
    dataset_dir: Path, out: Path, split_set: str = "warm", name: str | None = None, overwrite: bool = False
) -> Path:
    """Write ``<name>.inter``, the two id maps and ``<modality>_feat.npy`` so MMRec can train on our splits."""
    data = load_for_export(dataset_dir, split_set)
    stem = check_name(name or data.name)
    parts = [data.splits[n] for n in SPLIT_NAMES]
    n = [len(s) for s in parts]

    def column(attr: str, dtype: pa.DataType) -> pa.Array:
        values = [getattr(s, attr) for s in parts]
        if any(v is None for v in values):
            return pa.nulls(sum(n), dtype)
        return pa.array(np.concatenate(values), dtype)

    table = pa.table(
        {
            "userID": pa.array(np.concatenate([s.user_idx for s in parts]), pa.int64()),
            "itemID": pa.array(np.concatenate([s.item_idx for s in parts]), pa.int64()),
            "rating": column("rating", pa.float32()),
            "timestamp": column("timestamp", pa.int64()),
            "x_label": pa.array(np.repeat(np.arange(3), n), pa.int8()),
        }
    )
    with export_dir(out, overwrite=overwrite) as tmp:
        write_tsv(tmp / f"{stem}.inter", INTER_COLUMNS, table)
        write_tsv(tmp / USER_MAP[0], list(USER_MAP[1:]), id_map_table(data.user_ids))
        write_tsv(tmp / ITEM_MAP[0], list(ITEM_MAP[1:]), id_map_table(data.item_ids))
        write_feature_files(tmp, data.features)
    return Path(out)
