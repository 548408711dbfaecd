"""Content hashes: the manifest's per-file sha256 and a run's record of the dataset it trained on."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mmformat.uncached import open_uncached


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks (past the page cache when large: :mod:`mmformat.uncached`)."""
    h = hashlib.sha256()
    with open_uncached(path) as f:
        for block in f.blocks():
            h.update(block)
    return h.hexdigest()


def describe_file(path: Path, root: Path | None = None) -> dict:
    """``{"path", "bytes", "sha256"}`` of a file; ``path`` relative to ``root`` (POSIX separators) when given."""
    path = Path(path)
    name = path.relative_to(root).as_posix() if root else str(path)
    return {"path": name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
