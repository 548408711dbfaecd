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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_dir(parent: Path, prefix: str) -> Path:
    """A new temporary directory in ``parent`` with the umask's permissions (mkdtemp alone gives 0700, which
    would hide a dataset from other users and container uids sharing a volume)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def temp_file(parent: Path, prefix: str) -> tuple[int, str]:
    """``(fd, path)`` of a new temporary file in ``parent`` with the umask's permissions (not mkstemp's 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=parent)
    os.chmod(tmp, 0o666 & ~_umask())
    return fd, tmp


@contextmanager
def atomic_dir(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``target``, on any error it is removed."""
    target = Path(target)
    if target.exists() and not overwrite:
        raise PrepError("output already exists (use --overwrite to replace it)", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(target.parent, f".{target.name}.tmp-")
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
    fd, tmp = temp_file(path.parent, f".{path.name}.tmp-")
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
