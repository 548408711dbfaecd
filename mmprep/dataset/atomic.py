"""Atomic file and directory writes: build under a temporary name, then rename into place."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmprep.errors import PrepError


@contextmanager
def atomic_dir(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``target``, on any error it is removed."""
    target = Path(target)
    if target.exists() and not overwrite:
        raise PrepError("output already exists (use --overwrite to replace it)", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def _replace_from_tmp(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (sorted keys, trailing newline)."""

    def _w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.write("\n")

    _replace_from_tmp(path, _w)


def write_parquet(path: Path, table: pa.Table) -> None:
    """Write a Parquet file atomically with zstd compression and no pandas metadata."""
    table = table.replace_schema_metadata(None)
    _replace_from_tmp(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def write_npy(path: Path, array: np.ndarray) -> None:
    """Write a ``.npy`` file atomically."""

    def _w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    _replace_from_tmp(path, _w)
