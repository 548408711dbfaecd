"""Tab-separated text files (MMRec ``.inter`` and id maps, LATTICE ``item_list.txt``) read line-exactly.

Parsing is vectorised with pyarrow; every problem is reported with the file and its 1-based line number.
Blank lines are ignored; Windows line endings are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmprep.errors import PrepError

_INT = r"^[0-9]+$"
_SIGNED_INT = r"^-?[0-9]+(\.0*)?$"
_FLOAT = r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"


@dataclass
class Delimited:
    """The rows of a tab-separated file: string columns by name and the line number of each row."""

    path: Path
    names: list[str]
    columns: dict[str, pa.Array]
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.lines)

    def _first_bad(self, column: str, ok: pa.Array, problem: str) -> None:
        bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
        if bad.size:
            value = self.columns[column][int(bad[0])].as_py()
            raise PrepError(f"{column} {value!r} {problem}", self.path, int(self.lines[bad[0]]))

    def ints(self, column: str) -> np.ndarray:
        """A column of non-negative integers as int64."""
        col = self.columns[column]
        self._first_bad(column, pc.match_substring_regex(col, _INT), "is not a non-negative integer")
        bad = np.flatnonzero(pc.greater(pc.utf8_length(col), 18).to_numpy(zero_copy_only=False))
        if bad.size:
            raise PrepError(
                f"{column} {col[int(bad[0])].as_py()!r} is too large", self.path, int(self.lines[bad[0]])
            )
        return pc.cast(col, pa.int64()).to_numpy()

    def _optional(self, column: str) -> pa.Array | None:
        if column not in self.columns or len(self) == 0:
            return None
        col = self.columns[column]
        empty = pc.equal(col, "").to_numpy(zero_copy_only=False)
        if empty.all():
            return None
        if empty.any():
            raise PrepError(f"{column} is empty", self.path, int(self.lines[np.flatnonzero(empty)[0]]))
        return col

    def optional_floats(self, column: str) -> np.ndarray | None:
        """A float column, or None when the column is absent or empty on every line."""
        col = self._optional(column)
        if col is None:
            return None
        self._first_bad(column, pc.match_substring_regex(col, _FLOAT), "is not a number")
        return pc.cast(col, pa.float64()).to_numpy()

    def optional_ints(self, column: str) -> np.ndarray | None:
        """An integer column (``123`` or ``123.0``), or None when absent or empty on every line."""
        col = self._optional(column)
        if col is None:
            return None
        self._first_bad(column, pc.match_substring_regex(col, _SIGNED_INT), "is not an integer")
        return pc.cast(pc.replace_substring_regex(col, r"\.0*$", ""), pa.int64()).to_numpy()


def read_delimited(path: Path, header: bool, n_fields: int = 2, required: tuple[str, ...] = ()) -> Delimited:
    """Split a UTF-8 file into tab-separated fields.

    With ``header`` the first non-blank line names the columns (``required`` must be among them); without it
    every line has ``n_fields`` fields, named ``0``, ``1``, ...
    """
    path = Path(path)
    if not path.is_file():
        raise PrepError("missing file", path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise PrepError(f"not UTF-8 text ({e.reason} at byte {e.start})", path) from None
    lines = pc.utf8_rtrim(pa.array(text.split("\n"), pa.string()), characters="\r")
    numbers = np.arange(1, len(lines) + 1)
    keep = pc.not_equal(pc.utf8_trim_whitespace(lines), "").to_numpy(zero_copy_only=False)
    lines, numbers = lines.filter(pa.array(keep)), numbers[keep]
    if header:
        if len(lines) == 0:
            raise PrepError("empty file (expected a header line)", path)
        names = lines[0].as_py().split("\t")
        missing = [c for c in required if c not in names]
        if missing:
            raise PrepError(
                f"header has no column {', '.join(missing)} (found: {', '.join(names)})",
                path,
                int(numbers[0]),
            )
        lines, numbers = lines.slice(1), numbers[1:]
    else:
        names = [str(j) for j in range(n_fields)]
    parts = pc.split_pattern(lines, "\t")
    counts = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(counts != len(names))
    if bad.size:
        raise PrepError(
            f"expected {len(names)} tab-separated fields, found {counts[bad[0]]}", path, int(numbers[bad[0]])
        )
    columns = {name: pc.list_element(parts, j) for j, name in enumerate(names)}
    return Delimited(path=path, names=names, columns=columns, lines=numbers)
