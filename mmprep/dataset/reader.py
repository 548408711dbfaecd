"""mmprep's view of a dataset directory: :class:`mmformat.reader.DatasetReader` with cached tables.

Every check lives in :mod:`mmformat` (the reader and ``mmformat.verify``); this module only adds the
conveniences mmprep's commands use (``users``/``items`` as cached properties).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pyarrow as pa

from mmformat.reader import DatasetReader, Split
from mmformat.verify import verify

__all__ = ["Dataset", "Split", "load_dataset", "verify_dataset"]


class Dataset(DatasetReader):
    """A dataset directory opened by mmprep; ``users``/``items`` are read (and checked) once."""

    @cached_property
    def users(self) -> pa.Table:  # type: ignore[override]
        return DatasetReader.users(self)

    @cached_property
    def items(self) -> pa.Table:  # type: ignore[override]
        return DatasetReader.items(self)


def load_dataset(root: str | Path) -> Dataset:
    """Open a dataset directory (reads and validates the manifest; data is loaded on first use)."""
    return Dataset(root)


def verify_dataset(root: str | Path, check_hashes: bool = True) -> list[str]:
    """Check a dataset against docs/FORMAT.md; returns a list of problems (empty when valid)."""
    return verify(root, check_hashes=check_hashes)
