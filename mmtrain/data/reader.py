"""mmtrain's reader of a dataset directory: the strict :class:`mmformat.reader.DatasetReader`, unchanged.

mmtrain reads only through it, so it accepts and refuses exactly what ``mmprep verify`` does; a broken
dataset fails with one line (:class:`mmformat.errors.FormatError`) naming the file instead of a traceback deep
inside training. mmtrain never imports mmprep.
"""

from __future__ import annotations

from pathlib import Path

from mmformat.reader import DatasetReader, Split

__all__ = ["DatasetDir", "Split"]


class DatasetDir(DatasetReader):
    """A dataset opened for training: the manifest is validated and its feature files must agree with it."""

    def __init__(self, root: str | Path):
        super().__init__(root)
        self.check_layout()
