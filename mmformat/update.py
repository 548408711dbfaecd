"""Changing an existing dataset safely: lock it, check its files are what the manifest says, write, re-list.

Every command that adds to a dataset (cold splits, features, graphs) goes through :func:`dataset_update`, so
none of them can launder a tampered or corrupted file into a fresh manifest: the files it does not replace are
checked against their sha256 first, and only the files it wrote are hashed afresh.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmformat.atomic import remove_stale_temps, write_lock
from mmformat.errors import FormatError
from mmformat.manifest import check_files, read_manifest, update_manifest


@dataclass
class Update:
    """An update in progress: edit ``manifest`` (top-level keys) and record every path written."""

    root: Path
    manifest: dict[str, Any]
    written: list[str] = field(default_factory=list)
    replaced_dirs: list[str] = field(default_factory=list)

    def wrote(self, *paths: str) -> None:
        """Record relative paths (POSIX) this update wrote; they are hashed into the manifest at the end."""
        self.written.extend(paths)


def sweep(root: Path) -> None:
    """Remove dead writers' temporaries in ``root`` and its visible sub-folders (one level)."""
    remove_stale_temps(root)
    for sub in root.iterdir():
        if sub.is_dir() and not sub.name.startswith("."):
            remove_stale_temps(sub)


@contextmanager
def dataset_update(root: str | Path, replacing: Iterable[str] = ()) -> Iterator[Update]:
    """Lock ``root``, verify the files the manifest lists (except ``replacing``, which this update rewrites),
    sweep dead writers' temporaries, yield an :class:`Update`; on success rewrite the manifest last.

    A listed file that is missing or whose size/sha256 differs refuses the update with one line naming it.
    """
    root = Path(root)
    read_manifest(root)
    with write_lock(root):
        manifest = read_manifest(root)
        # a file the manifest omits (left by an update killed before its manifest) is not tampering
        problems = check_files(root, manifest, skip=replacing, unlisted=False)
        if problems:
            raise FormatError(f"{problems[0]}; refusing to update (rebuild or restore the dataset)", root)
        sweep(root)
        update = Update(root, manifest)
        yield update
        update_manifest(root, update.manifest, update.written, update.replaced_dirs)
