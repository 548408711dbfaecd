"""How much memory DuckDB may use during a build, and where it spills the rest.

``mmprep build --memory-limit`` sets both for the whole build with :func:`spill_settings`: every
:func:`mmprep.sources.netflix.duckdb_session` opened inside it gets ``SET memory_limit`` and a private
``temp_directory`` in a folder next to the output (the output's disk usually has the room a large dump needs,
``/tmp`` often does not). The folder carries the pid in its name, is removed when the build ends (also on
error), and folders of killed builds are removed by the next one.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mmformat.atomic import pid_alive
from mmprep.errors import PrepError

SPILL_PREFIX = ".mmprep-spill-"
DEFAULT_RAM_SHARE = 0.5
MIN_LIMIT = 64 << 20  # DuckDB reads JSON in blocks of several MiB; below this even small files fail
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tb": 1 << 40,
    "tib": 1 << 40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*|%)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class SpillSettings:
    """DuckDB's memory limit in bytes and the folder its sessions spill into."""

    limit_bytes: int
    temp_dir: Path


# a module global, not a ContextVar: sessions may be opened on worker threads, which start with an empty context
_current: list[SpillSettings] = []


def total_ram() -> int:
    """Physical memory of this machine in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_memory_limit() -> int:
    """The default ``--memory-limit``: :data:`DEFAULT_RAM_SHARE` of the machine's RAM."""
    return int(total_ram() * DEFAULT_RAM_SHARE)


def parse_memory_limit(text: str) -> int:
    """Bytes of a size such as ``4GB``, ``512MiB``, ``64m`` or ``25%`` (of RAM); units are powers of 1024.

    Raises a one-line :class:`PrepError` for anything else or for less than :data:`MIN_LIMIT`.
    """
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or (unit != "%" and unit not in _UNITS):
        raise PrepError(f"--memory-limit must be a size such as 4GB, 512MB or 50%, got {text!r}")
    value = float(match.group(1))
    if unit == "%":
        if not 0 < value <= 100:
            raise PrepError(f"--memory-limit must be a share of RAM in (0%, 100%], got {text!r}")
        limit = int(total_ram() * value / 100)
    else:
        limit = int(value * _UNITS[unit])
    if limit < MIN_LIMIT:
        raise PrepError(f"--memory-limit must be at least {MIN_LIMIT >> 20}MB, got {text!r}")
    return limit


def current() -> SpillSettings | None:
    """The settings of the build in progress, or None outside :func:`spill_settings`."""
    return _current[-1] if _current else None


def remove_orphans(parent: Path) -> list[Path]:
    """Delete spill folders in ``parent`` left by killed builds (their pid, in the name, is gone)."""
    removed = []
    for folder in parent.glob(f"{SPILL_PREFIX}*-*"):
        pid = folder.name[len(SPILL_PREFIX) :].split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@contextmanager
def spill_settings(limit_bytes: int, out: Path) -> Iterator[SpillSettings]:
    """Within the block, DuckDB sessions use at most ``limit_bytes`` and spill next to ``out``."""
    parent = Path(out).absolute().parent
    parent.mkdir(parents=True, exist_ok=True)  # an OSError names the path: the CLI prints it as one line
    remove_orphans(parent)
    folder = Path(tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-", dir=parent))
    settings = SpillSettings(limit_bytes, folder)
    _current.append(settings)
    try:
        yield settings
    finally:
        _current.remove(settings)
        shutil.rmtree(folder, ignore_errors=True)
