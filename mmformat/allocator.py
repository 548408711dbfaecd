"""A job's process keeps the memory it frees for reuse rather than handing it back (glibc malloc settings).

On a virtual machine a page the process hands back to the system and asks for again is not free: the kernel
zeroes it on the next touch and the hypervisor may have to back it again. glibc gives every allocation above
32 MiB its own ``mmap`` and unmaps it when freed, so a job that allocates and frees large arrays over and over
(numpy stage after stage in ``mmprep build``; torch tensors step after step in training and ranking) faults
the same memory in again each time. :func:`keep_freed_memory` serves every ``malloc`` from one heap that is
never trimmed. It is process-wide, so only the command-line processes of long jobs apply it (``mmprep build``:
:func:`mmprep.cli.run`; ``mmtrain run / grid / eval / suite`` and their ranks and Ray trials:
:func:`mmtrain.cli.console`); library functions leave the caller's allocator alone, and it steps aside when
the user chose malloc settings through the environment. Measured effects: BENCHMARKS.md.
"""

from __future__ import annotations

import os
import platform

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
_GLIBC_ENV = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")
SWITCH = "MODALREC_KEEP_FREED_MEMORY"  # "0": leave glibc's defaults (a smaller peak, more page faults)
_applied = False


def keeps_freed_memory() -> bool:
    """Whether :func:`keep_freed_memory` applied its settings in this process (run records note it: CPU
    timings depend on it)."""
    return _applied


def keep_freed_memory() -> bool:
    """Have glibc serve every ``malloc`` from one never-trimmed heap, so freed memory is reused in place.

    ``M_MMAP_MAX`` 0: no allocation gets its own ``mmap`` (they would be unmapped on free and faulted in again);
    ``M_ARENA_MAX`` 1: threads share the main heap (another arena's heap cannot hold an allocation above
    64 MiB and would map it anyway); ``M_TRIM_THRESHOLD`` the largest value: the heap's free top is kept. The
    price is that the process's memory does not shrink before it exits, and the heap's free gaps count in its
    peak: the 100M-review build peaks at 3.6-3.7 GiB either way, a CPU training run up to a third higher
    (BENCHMARKS.md). Returns whether the settings were applied: not on a C library other than glibc, nor when a
    ``MALLOC_*`` variable or a ``glibc.malloc`` tunable is set, nor when ``MODALREC_KEEP_FREED_MEMORY=0``.
    """
    chosen = "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "") or any(map(os.environ.get, _GLIBC_ENV))
    if chosen or os.environ.get(SWITCH) == "0" or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes  # here, not at the top: the consoles import this module for every command

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt takes an int; glibc stores the trim threshold as size_t, so -1 is "never trim"
    global _applied
    _applied = all([mallopt(M_MMAP_MAX, 0), mallopt(M_ARENA_MAX, 1), mallopt(M_TRIM_THRESHOLD, -1)])
    return _applied


def keep_freed_memory_for(args: list[str], commands: tuple[str, ...]) -> bool:
    """:func:`keep_freed_memory` when the command of a console script's ``args`` (the first one that is not an
    option) is one of ``commands``; returns whether the settings were applied."""
    command = next((a for a in args if not a.startswith("-")), None)
    return command in commands and keep_freed_memory()
