"""User-facing errors of mmtrain: one line naming the file, the line or record, and the problem.

mmtrain is independent of mmprep (it only reads what docs/FORMAT.md defines), so it has its own error class;
the CLI prints it on one line and exits 2, never with a traceback.
"""

from __future__ import annotations

from pathlib import Path


class TrainError(Exception):
    """A user error (bad config, unknown model, missing feature, invalid dataset)."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        self.problem = message
        super().__init__(self.format())

    def format(self) -> str:
        """``path:line: problem`` (the parts that are known)."""
        where = ""
        if self.path:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        return f"{where}{self.problem}"
