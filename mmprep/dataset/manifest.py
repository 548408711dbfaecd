"""Building ``manifest.json``: the ``created_by`` record; reading and writing live in :mod:`mmformat.manifest`."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone

from mmformat.manifest import read_manifest, update_manifest, write_manifest

__all__ = ["created_by", "read_manifest", "update_manifest", "write_manifest"]


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
