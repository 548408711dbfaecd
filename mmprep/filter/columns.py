"""Append-only numeric columns kept in memory or in a file, read back only at the rows asked for.

While a large dump is read, the columns that the dedupe and the k-core do not look at (rating, timestamp) would
hold gigabytes of RAM (12 bytes a review: 1.2 GB at 100M reviews) only for most of their rows to be dropped.
With a folder, :class:`ColumnSink` writes them to a raw file there instead and :meth:`ColumnSink.take` reads
the file back in slices of :data:`TAKE_ROWS`, keeping the surviving rows only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TAKE_ROWS = 4 << 20


class ColumnSink:
    """One append-only column of ``dtype``: in memory, or in ``folder/name.bin`` when a folder is given."""

    def __init__(self, dtype: np.dtype | type, name: str, folder: Path | None = None) -> None:
        self.dtype = np.dtype(dtype)
        self.path = None if folder is None else Path(folder) / f"{name}.bin"
        self._parts: list[np.ndarray] = []
        self._file = None if self.path is None else open(self.path, "wb")
        self.rows = 0

    def append(self, values: np.ndarray) -> None:
        """Add ``values`` (converted to the column's dtype) after the rows so far."""
        values = np.ascontiguousarray(values, dtype=self.dtype)
        if self._file is not None:
            self._file.write(values.tobytes())
        else:
            self._parts.append(values)
        self.rows += len(values)

    def truncate(self, rows: int) -> None:
        """Drop every row from ``rows`` on (rows read again after a rewind)."""
        if rows >= self.rows:
            return
        if self._file is not None:
            self._file.flush()
            self._file.truncate(rows * self.dtype.itemsize)
            self._file.seek(rows * self.dtype.itemsize)
        else:
            kept, n = [], 0
            for part in self._parts:
                if n + len(part) > rows:
                    part = part[: rows - n]
                kept.append(part)
                n += len(part)
                if n >= rows:
                    break
            self._parts = [p for p in kept if len(p)]
        self.rows = rows

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The values at ``rows`` (ascending row indices)."""
        if self._file is None:
            values = np.concatenate(self._parts) if self._parts else np.zeros(0, self.dtype)
            self._parts = [values]
            return values[rows]
        self._file.flush()
        out = np.empty(len(rows), dtype=self.dtype)
        bounds = np.searchsorted(rows, np.arange(0, self.rows + TAKE_ROWS, TAKE_ROWS))
        with open(self.path, "rb") as f:
            for k in range(len(bounds) - 1):
                lo, hi = bounds[k], bounds[k + 1]
                if lo == hi:
                    continue
                start = k * TAKE_ROWS
                f.seek(start * self.dtype.itemsize)
                block = np.fromfile(f, dtype=self.dtype, count=min(TAKE_ROWS, self.rows - start))
                out[lo:hi] = block[rows[lo:hi] - start]
        return out

    def close(self) -> None:
        """Close and delete the file (if any)."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self.path.unlink(missing_ok=True)
        self._parts = []
