"""Building, reading and refreshing ``manifest.json``."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mmformat.atomic import write_json
from mmformat.hashing import describe_file
from mmformat.layout import FORMAT_VERSION, MANIFEST
from mmprep.errors import PrepError


def created_by() -> dict[str, str]:
    """Versions of the tools that wrote a dataset."""
    import duckdb
    import numpy
    import pyarrow

    import mmprep

    info = {
        "tool": "mmprep",
        "version": mmprep.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "pyarrow": pyarrow.__version__,
        "duckdb": duckdb.__version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if image := os.environ.get("MODALREC_IMAGE"):
        info["image"] = image  # set in the Docker image: which image (tag, base, build date) wrote this
    return info


def file_list(root: Path) -> list[dict[str, Any]]:
    """Every data file under ``root`` except the manifest, sorted by path, with size and sha256."""
    root = Path(root)
    files = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.name != MANIFEST
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return [describe_file(p, root) for p in sorted(files, key=lambda p: p.relative_to(root).as_posix())]


def read_manifest(root: Path) -> dict[str, Any]:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise PrepError("not a dataset directory (manifest.json missing)", root)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PrepError(f"manifest is not valid JSON ({e})", path) from None
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise PrepError(
            f"format_version {version!r} is not supported (this mmprep reads {FORMAT_VERSION})", path
        )
    return manifest


def write_manifest(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Recompute the file list of ``root`` and write the manifest atomically; returns what was written."""
    manifest = dict(manifest)
    manifest["format_version"] = FORMAT_VERSION
    manifest["files"] = file_list(root)
    write_json(Path(root) / MANIFEST, manifest)
    return manifest
