"""Image files in a folder, named ``<item_id>.<ext>``, matched to items."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmprep.errors import PrepError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def folder_images(image_dir: Path, item_ids: pa.Array) -> tuple[list[str | None], dict[str, int]]:
    """Path of each item's image (row i = item_idx i) or None; with counts of files seen and matched.

    When one id has several files (``a.jpg`` and ``a.png``), the first by extension order above wins.
    """
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise PrepError("image directory not found", image_dir)
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
    found: dict[str, tuple[int, str]] = {}
    n_files = 0
    with os.scandir(image_dir) as it:
        for entry in it:
            stem, ext = os.path.splitext(entry.name)
            ext = ext.lower()
            if ext in rank and entry.is_file():
                n_files += 1
                if stem not in found or rank[ext] < found[stem][0]:
                    found[stem] = (rank[ext], entry.path)
    stems = pa.array(sorted(found), type=pa.string())
    files = np.asarray([found[s][1] for s in stems.to_pylist()] + [None], dtype=object)
    where = pc.index_in(item_ids.cast(pa.string()), value_set=stems)
    hit = np.asarray(pc.is_valid(where), dtype=bool)
    pos = np.asarray(pc.fill_null(where, len(stems)), dtype=np.int64)
    return list(files[pos]), {"files": n_files, "matched": int(hit.sum())}
