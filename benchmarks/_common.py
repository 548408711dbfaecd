"""Helpers shared by the benchmark scripts: paths, the machine description written into every results JSON,
a float32 matrix-product calibration and the first-use import of the shared DiffMM datasets.

The scripts run as ``python benchmarks/X.py`` and import this module after putting their own directory on
``sys.path`` (the same way they import ``_generate``).

``machine_info`` keys, common to every script (older results files used other names for some of them):

- ``cpu``: CPU model name (``/proc/cpuinfo``, else ``platform.processor()``);
- ``cpu_count``: logical CPUs, ``os.cpu_count()`` (``cpus`` in older features/knn files, ``logical_cores`` in
  older prep files);
- ``usable_cores``: CPUs this process may run on (its affinity mask);
- ``ram_gib``: total memory;
- ``platform``: ``platform.platform()`` (``os`` in older prep files);
- ``python``: Python version;
- ``loadavg_1_5_15``: 1/5/15-minute load average when ``machine_info`` was called (``load_avg_at_start``,
  unrounded, in older prep files);
- ``transparent_hugepages``: the kernel's transparent huge page mode (``always``, ``madvise``, ``never``; None
  off Linux): large hash tables and arrays run faster with huge pages, so builds of different sizes compare
  only on one mode (absent in files before session 17).
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHARED = REPO.parent / "shared" / "data"
DIFFMM_SOURCES = {"tiktok": SHARED / "tiktok-mmssl", "baby": SHARED / "amazon-baby" / "mmssl-diffmm"}


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo``, else ``platform.processor()`` (``unknown`` if that is empty)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib() -> float | None:
    """Total memory in GiB from ``/proc/meminfo`` (None where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def git_commit(repo: Path) -> str | None:
    """The checked-out commit of the git repository at ``repo`` (None when it is not a git checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None


THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def transparent_hugepages(path: Path = THP_MODE) -> str | None:
    """The selected mode in the kernel's THP file ``path`` (the bracketed word), else None."""
    try:
        text = path.read_text()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def machine_info(**extra: Any) -> dict[str, Any]:
    """What the numbers were measured on: the common fields (module docstring) updated with ``extra``."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "ram_gib": ram_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_1_5_15": load,
        "transparent_hugepages": transparent_hugepages(),
        **extra,
    }


def sets_for(items: list[str], model: str) -> list[str]:
    """The ``--set`` items that apply to ``model``: ``KEY=VALUE`` for every model, ``MODEL:KEY=VALUE`` for
    that model only (returned without the prefix)."""
    out = []
    for item in items:
        target, sep, rest = item.partition(":")
        if not sep or "=" in target:
            out.append(item)
        elif target == model:
            out.append(rest)
    return out


def sgemm_gflops(size: int = 2048, repeat: int = 3) -> float:
    """float32 matrix-product speed of this process right now (a calibration for shared, busy machines)."""
    import numpy as np

    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return round(2 * size**3 / best / 1e9, 1)


def diffmm_dataset(cache: Path, name: str) -> Path:
    """The shared DiffMM dataset ``name`` (a key of ``DIFFMM_SOURCES``) as an mmprep dataset ``cache/name``.

    Imported with :func:`mmprep.interop.import_diffmm` on first use, i.e. while ``cache/name/manifest.json``
    is missing; later calls (from any script with the same ``--cache``) reuse it.
    """
    out = cache / name
    if not (out / "manifest.json").is_file():
        from mmprep.interop import import_diffmm

        import_diffmm(DIFFMM_SOURCES[name], out, name=name, overwrite=True)
    return out
