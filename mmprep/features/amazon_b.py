"""Stream-read McAuley's Amazon 2014 ``image_features_<Cat>.b`` files.

The file is records with no header, repeated to EOF: a 10-byte ASCII asin, then ``dim`` (4096) little-endian
float32. It is read in chunks of records with ``np.fromfile`` and a structured dtype (never whole); each record's
asin is matched to the dataset's item ids with a sorted lookup; records of other asins are skipped. When an asin
occurs twice the later record wins (as in MMRec's dict-based reader).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmformat.progress import bar as progress_bar
from mmprep.errors import PrepError

ASIN_BYTES = 10
DEFAULT_DIM = 4096


def record_dtype(dim: int = DEFAULT_DIM) -> np.dtype:
    """``[('asin', 'S10'), ('feat', '<f4', (dim,))]``, 10 + 4*dim bytes, no padding."""
    return np.dtype([("asin", f"S{ASIN_BYTES}"), ("feat", "<f4", (dim,))])


def read_amazon_b(
    path: Path, item_ids: pa.Array, dim: int = DEFAULT_DIM, chunk_records: int = 2048
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """``(matrix float32 [n_items, dim], found bool [n_items], stats)``; unfound rows are zero."""
    path = Path(path)
    if not path.is_file():
        raise PrepError("image feature file not found", path)
    rec = record_dtype(dim)
    size = path.stat().st_size
    if size % rec.itemsize:
        whole = size // rec.itemsize
        raise PrepError(
            f"record {whole + 1} is truncated: size {size} is not a multiple of {rec.itemsize} bytes "
            f"(10-byte asin + {dim} float32); wrong --b-dim?",
            path,
        )
    ids = item_ids.cast(pa.binary())
    length = np.asarray(pc.fill_null(pc.binary_length(ids), 0), dtype=np.int64)
    usable = np.flatnonzero((length > 0) & (length <= ASIN_BYTES))
    keys = ids.take(usable).to_numpy(zero_copy_only=False).astype(f"S{ASIN_BYTES}")
    order = np.argsort(keys, kind="stable")
    sorted_keys, sorted_rows = keys[order], usable[order]
    n = len(item_ids)
    matrix = np.zeros((n, dim), dtype=np.float32)
    found = np.zeros(n, dtype=bool)
    stats = {"records": 0, "matched_records": 0, "duplicate_records": 0}
    total = size // rec.itemsize
    with (
        open(path, "rb") as f,
        progress_bar(total=total, unit="rec", desc="read .b") as bar,
    ):
        while True:
            chunk = np.fromfile(f, dtype=rec, count=chunk_records)
            if len(chunk) == 0:
                break
            asin = chunk["asin"]
            if len(sorted_keys):
                j = np.minimum(np.searchsorted(sorted_keys, asin), len(sorted_keys) - 1)
                hit = sorted_keys[j] == asin
                rows = sorted_rows[j[hit]]
                stats["duplicate_records"] += int(found[rows].sum()) + len(rows) - len(np.unique(rows))
                matrix[rows] = chunk["feat"][hit]
                found[rows] = True
                stats["matched_records"] += int(hit.sum())
            stats["records"] += len(chunk)
            bar.update(len(chunk))
    return matrix, found, stats
