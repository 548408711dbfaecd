"""DiffMM / MDMNS / MMSSL pickle layout: ``trnMat.pkl``, ``valMat.pkl`` (or e.g. ``sports_valid.pkl``) and
``tstMat.pkl``, each a pickled ``scipy.sparse.coo_matrix`` (``n_users x n_items``, float64, values 1.0), plus
``<modality>_feat.npy`` (``image``, ``text``, ``audio``; TikTok ships float16, stored here as float32).

The pickles are loaded with a restricted unpickler (:mod:`mmprep.interop.safe_pickle`): pickles from untrusted
sources are unsafe, so only numpy arrays and scipy.sparse matrices are accepted. Explicit zero entries are not
interactions (the models load ``matrix != 0``) and are dropped. A val or test matrix with fewer item columns
than train (exports that drop the trailing items without interactions in that split) is padded to the train
width, with one warning, and the padding is recorded in the manifest (``params.padded_columns``).
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from mmformat.layout import SPLIT_NAMES
from mmprep.dataset.reader import Split
from mmprep.errors import PrepError
from mmprep.interop.common import (
    ImportedDataset,
    check_src_dir,
    export_dir,
    load_features,
    load_for_export,
    require_file,
    write_feature_files,
    write_imported,
)
from mmprep.interop.safe_pickle import load_coo

log = logging.getLogger(__name__)

TRAIN_FILE, VAL_FILE, TEST_FILE = "trnMat.pkl", "valMat.pkl", "tstMat.pkl"


def find_val_file(src_dir: Path, val_file: str | None = None) -> Path:
    """``--val-file`` when given, else ``valMat.pkl``, else the one ``*valid*.pkl`` in ``src_dir``."""
    if val_file:
        return require_file(src_dir / val_file)
    if (src_dir / VAL_FILE).is_file():
        return src_dir / VAL_FILE
    found = sorted(src_dir.glob("*valid*.pkl"))
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(p.name for p in found)
        raise PrepError(f"several validation pickles ({names}); choose one with --val-file", src_dir)
    raise PrepError(
        f"missing file (no {VAL_FILE} or *valid*.pkl; name it with --val-file)", src_dir / VAL_FILE
    )


def read_diffmm(src_dir: Path, val_file: str | None = None) -> ImportedDataset:
    """Read a DiffMM/MDMNS/MMSSL pickle dataset directory (see the module docstring)."""
    src_dir = check_src_dir(src_dir)
    paths = {
        "train": require_file(src_dir / TRAIN_FILE),
        "val": find_val_file(src_dir, val_file),
        "test": require_file(src_dir / TEST_FILE),
    }
    matrices = {name: load_coo(path) for name, path in paths.items()}
    shape = matrices["train"].shape
    padded: dict[str, int] = {}
    for name in ("val", "test"):
        m_shape = matrices[name].shape
        if m_shape[0] == shape[0] and m_shape[1] < shape[1]:
            # other repositories' exports drop the trailing items that have no interaction in this split
            padded[name] = shape[1] - m_shape[1]
            matrices[name] = sp.coo_matrix(
                (matrices[name].data, (matrices[name].row, matrices[name].col)), shape=shape
            )
        elif m_shape != shape:
            raise PrepError(f"shape {m_shape} differs from {paths['train'].name} {shape}", paths[name])
    if padded:
        log.warning(
            "%s: %s; padded to the %d columns of %s (recorded as params.padded_columns)",
            src_dir,
            ", ".join(f"{paths[n].name} has {k} fewer item columns" for n, k in padded.items()),
            shape[1],
            paths["train"].name,
        )
    splits, zeros = {}, 0
    for name in SPLIT_NAMES:
        m = matrices[name]
        keep = m.data != 0
        zeros += int((~keep).sum())
        splits[name] = Split(user_idx=m.row[keep].astype(np.int64), item_idx=m.col[keep].astype(np.int64))
    n_users, n_items = (int(s) for s in shape)
    features = load_features(src_dir, n_items)
    files = [(paths[n], n) for n in SPLIT_NAMES] + [(f.source, f"feature:{m}") for m, f in features.items()]
    return ImportedDataset(
        fmt="diffmm",
        name=src_dir.name,
        src_dir=src_dir,
        n_users=n_users,
        n_items=n_items,
        splits=splits,
        features=features,
        files=files,
        params={"val_file": paths["val"].name, **({"padded_columns": padded} if padded else {})},
        skipped={"zero_entries": zeros} if zeros else {},
    )


def import_diffmm(
    src_dir: Path, out: Path, name: str | None = None, overwrite: bool = False, val_file: str | None = None
) -> Path:
    """Import a DiffMM/MDMNS/MMSSL pickle dataset directory as a dataset at ``out``; returns ``out``."""
    data = read_diffmm(Path(src_dir), val_file=val_file)
    if name:
        data.name = name
    return write_imported(data, out, overwrite=overwrite)


def _coo(split: Split, shape: tuple[int, int]) -> sp.coo_matrix:
    return sp.coo_matrix(
        (
            np.ones(len(split), dtype=np.float64),
            (split.user_idx.astype(np.int32), split.item_idx.astype(np.int32)),
        ),
        shape=shape,
    )


def export_diffmm(dataset_dir: Path, out: Path, split_set: str = "warm", overwrite: bool = False) -> Path:
    """Write ``trnMat.pkl``/``valMat.pkl``/``tstMat.pkl`` (coo float64, values 1.0) and the feature files."""
    data = load_for_export(dataset_dir, split_set)
    shape = (data.n_users, data.n_items)
    with export_dir(out, overwrite=overwrite) as tmp:
        for split, file in zip(SPLIT_NAMES, (TRAIN_FILE, VAL_FILE, TEST_FILE), strict=True):
            with open(tmp / file, "wb") as f:
                pickle.dump(_coo(data.splits[split], shape), f, protocol=4)
        write_feature_files(tmp, data.features)
    return Path(out)
