"""The user-error base class of both packages: one line naming the file, the line or record, and the problem."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """An error caused by the user's input or environment; the CLIs print it as one line and exit 2.

    ``mmprep`` raises its subclass ``PrepError``, ``mmtrain`` its ``TrainError``, and the format package
    ``FormatError``; every CLI catches the base class.
    """

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


class FormatError(UserError):
    """A dataset directory that breaks the format (docs/FORMAT.md): missing file, bad schema, bad values."""
