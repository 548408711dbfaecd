"""Content hashes: the manifest's per-file sha256 and a run's record of the dataset it trained on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmformat.uncached import FileKey, file_key, open_uncached


def sha256_json(value: Any) -> str:
    """sha256 of ``value``'s canonical JSON (sorted keys, no spaces; other types as ``str``): equal values, equal
    digests, whatever their key order."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks (past the page cache when large: :mod:`mmformat.uncached`;
    the hashing here overlaps the reading ahead there)."""
    h = hashlib.sha256()
    with open_uncached(path) as f:
        for block in f.blocks():
            h.update(block)
    return h.hexdigest()


def describe_file(path: Path, root: Path | None = None, known: Mapping[FileKey, str] | None = None) -> dict:
    """``{"path", "bytes", "sha256"}`` of a file; ``path`` relative to ``root`` (POSIX separators) when given.
    ``known``: digests recorded while the file was read (:func:`mmformat.uncached.record_digests`), used when
    the file is unchanged since; otherwise the file is read and hashed."""
    path = Path(path)
    name = path.relative_to(root).as_posix() if root else str(path)
    st = path.stat()
    digest = (known or {}).get(file_key(st)) or sha256_file(path)
    return {"path": name, "bytes": st.st_size, "sha256": digest}
