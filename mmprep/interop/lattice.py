"""LATTICE / MICRO / MMSSL layout: ``{train,val,test}.json`` = ``{"<uid>": [iid, ...]}`` (in ``5-core/`` or the
dataset directory), optional raw id maps ``item2id.json``/``user2id.json`` (raw -> id) or ``item_list.txt``/
``user_list.txt`` (``raw\\tid``), and ``<modality>_feat.npy`` in the dataset directory.

Export writes ``5-core/{train,val,test}.json``, ``5-core/user-item-dict.json`` (every interaction of the split set
by user), ``5-core/item_list.txt``, ``5-core/user_list.txt`` (as LATTICE's ``build_data.py`` places them), the
features, and ``train_mat`` (pickled scipy CSR ``n_users x n_items`` of the training split, as MMSSL loads it).
"""

from __future__ import annotations

import json
import pickle
from itertools import chain
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from mmformat.layout import SPLIT_NAMES
from mmprep.dataset.reader import Split
from mmprep.errors import PrepError
from mmprep.interop.common import (
    ImportedDataset,
    check_range,
    check_src_dir,
    export_dir,
    id_map_table,
    ids_from_map,
    int_array,
    load_features,
    load_for_export,
    read_json,
    size_from_ids,
    write_feature_files,
    write_imported,
    write_tsv,
)
from mmprep.interop.delimited import read_delimited

SPLIT_DIR = "5-core"
JSON_NAMES = {"train": "train.json", "val": "val.json", "test": "test.json"}


def _read_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(user ids, item ids)`` of one ``{"<uid>": [iid, ...]}`` file."""
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise PrepError(
            f'expected a JSON object {{"<user id>": [item ids]}}, found {type(obj).__name__}', path
        )
    values = list(obj.values())
    if not set(map(type, values)) <= {list}:
        key = next(k for k, v in obj.items() if not isinstance(v, list))
        raise PrepError(f"user {key!r}: expected a list of item ids, found {type(obj[key]).__name__}", path)
    keys = np.asarray(list(obj.keys()), dtype=object)
    try:
        user_keys = keys.astype(np.int64) if len(keys) else np.zeros(0, np.int64)
    except (ValueError, OverflowError):
        bad = next((k for k in keys if not k.isdigit()), keys[0])
        raise PrepError(f"user key {bad!r} is not an integer id", path) from None
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    items = int_array(list(chain.from_iterable(values)), "item ids", path)
    return np.repeat(user_keys, lengths), items


def _read_id_map(dirs: list[Path], what: str) -> tuple[np.ndarray, Path] | None:
    """Raw ids by index from ``<what>2id.json`` or ``<what>_list.txt`` (the first found in ``dirs``)."""
    for directory in dirs:
        path = directory / f"{what}2id.json"
        if path.is_file():
            obj = read_json(path)
            if not isinstance(obj, dict):
                raise PrepError(f"expected a JSON object {{raw id: index}}, found {type(obj).__name__}", path)
            idx = int_array(list(obj.values()), f"{what} indices", path)
            return ids_from_map(np.asarray(list(obj.keys()), dtype=object), idx, what, path), path
    for directory in dirs:
        path = directory / f"{what}_list.txt"
        if path.is_file():
            table = read_delimited(path, header=False, n_fields=2)
            raw = np.asarray(table.columns["0"].to_pylist(), dtype=object)
            return ids_from_map(raw, table.ints("1"), what, path), path
    return None


def _size_without_map(
    split: tuple[np.ndarray, np.ndarray], pos: int, n_records: int, what: str, path: Path
) -> int:
    """``max id + 1`` of one split's users (``pos`` 0) or items (1), bounded (:func:`size_from_ids`)."""
    values = split[pos]
    where = f" (record of user {split[0][int(values.argmax())]})" if pos == 1 and len(values) else ""
    return size_from_ids(values, n_records, what, path, where)


def read_lattice(src_dir: Path) -> ImportedDataset:
    """Read a LATTICE/MICRO/MMSSL dataset directory (see the module docstring)."""
    src_dir = check_src_dir(src_dir)
    json_dir = src_dir / SPLIT_DIR if (src_dir / SPLIT_DIR / JSON_NAMES["train"]).is_file() else src_dir
    paths = {name: json_dir / JSON_NAMES[name] for name in SPLIT_NAMES}
    raw = {name: _read_split(path) for name, path in paths.items()}
    files = [(paths[n], n) for n in SPLIT_NAMES]
    dirs = [src_dir] if json_dir == src_dir else [src_dir, json_dir]
    ids, sizes, limits = {}, {}, {}
    for what, pos in (("user", 0), ("item", 1)):
        found = _read_id_map(dirs, what)
        if found is None:
            ids[what], limits[what] = None, ""
            n_records = sum(len(r[pos]) for r in raw.values())
            sizes[what] = max(
                (_size_without_map(r, pos, n_records, what, paths[n]) for n, r in raw.items()), default=0
            )
            continue
        ids[what], map_path = found
        sizes[what] = len(ids[what])
        limits[what] = f" ({map_path.name} has {sizes[what]} {what}s)"
        files.append((map_path, f"{what}_ids"))
    for name in SPLIT_NAMES:
        for what, pos in (("user", 0), ("item", 1)):
            check_range(raw[name][pos], sizes[what], what, paths[name], limits[what])
    features = load_features(src_dir, sizes["item"])
    files += [(f.source, f"feature:{m}") for m, f in features.items()]
    name = src_dir.parent.name if src_dir.name == SPLIT_DIR else src_dir.name
    return ImportedDataset(
        fmt="lattice",
        name=name,
        src_dir=src_dir,
        n_users=sizes["user"],
        n_items=sizes["item"],
        splits={n: Split(user_idx=u, item_idx=i) for n, (u, i) in raw.items()},
        user_ids=ids["user"],
        item_ids=ids["item"],
        features=features,
        files=files,
        params={"json_dir": str(json_dir.relative_to(src_dir))},
    )


def import_lattice(src_dir: Path, out: Path, name: str | None = None, overwrite: bool = False) -> Path:
    """Import a LATTICE/MICRO/MMSSL dataset directory as a dataset at ``out``; returns ``out``."""
    data = read_lattice(Path(src_dir))
    if name:
        data.name = name
    return write_imported(data, out, overwrite=overwrite)


def _user_dict(split: Split) -> dict[str, list[int]]:
    """``{"<uid>": [iid, ...]}`` for every user with at least one interaction, items ascending."""
    order = np.lexsort((split.item_idx, split.user_idx))
    users, items = split.user_idx[order], split.item_idx[order]
    uniq, starts = np.unique(users, return_index=True)
    groups = np.split(items, starts[1:]) if len(uniq) else []
    return dict(zip(map(str, uniq.tolist()), (g.tolist() for g in groups), strict=True))


def _write_json(path: Path, obj: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)


def export_lattice(dataset_dir: Path, out: Path, split_set: str = "warm", overwrite: bool = False) -> Path:
    """Write the LATTICE/MICRO/MMSSL files of one split set of a dataset (see the module docstring)."""
    data = load_for_export(dataset_dir, split_set)
    train = data.splits["train"]
    union = Split(
        user_idx=np.concatenate([data.splits[n].user_idx for n in SPLIT_NAMES]),
        item_idx=np.concatenate([data.splits[n].item_idx for n in SPLIT_NAMES]),
    )
    train_mat = sp.csr_matrix(
        (np.ones(len(train), dtype=np.float32), (train.user_idx, train.item_idx)),
        shape=(data.n_users, data.n_items),
    )
    with export_dir(out, overwrite=overwrite) as tmp:
        core = tmp / SPLIT_DIR
        core.mkdir()
        for split in SPLIT_NAMES:
            _write_json(core / JSON_NAMES[split], _user_dict(data.splits[split]))
        _write_json(core / "user-item-dict.json", _user_dict(union))
        write_tsv(core / "item_list.txt", None, id_map_table(data.item_ids))
        write_tsv(core / "user_list.txt", None, id_map_table(data.user_ids))
        with open(tmp / "train_mat", "wb") as f:
            pickle.dump(train_mat, f, protocol=4)
        write_feature_files(tmp, data.features)
    return Path(out)
