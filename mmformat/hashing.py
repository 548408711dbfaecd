"""Content hashes: the manifest's per-file sha256 and a run's record of the dataset it trained on."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mmformat.uncached import FileKey, file_key, open_uncached


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks and hashed on the reading thread (past the page cache when
    large: :mod:`mmformat.uncached`)."""
    with open_uncached(path, digest=True) as f:
        for _ in f.blocks():
            pass
        return f.hexdigest()


def describe_file(path: Path, root: Path | None = None, known: Mapping[FileKey, str] | None = None) -> dict:
    """``{"path", "bytes", "sha256"}`` of a file; ``path`` relative to ``root`` (POSIX separators) when given.
    ``known``: digests recorded while the file was read (:func:`mmformat.uncached.record_digests`), used when
    the file is unchanged since; otherwise the file is read and hashed."""
    path = Path(path)
    name = path.relative_to(root).as_posix() if root else str(path)
    st = path.stat()
    digest = (known or {}).get(file_key(st)) or sha256_file(path)
    return {"path": name, "bytes": st.st_size, "sha256": digest}
