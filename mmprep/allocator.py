"""How a build's process allocates memory: freed memory is kept for reuse rather than given back.

On a virtual machine a page the process hands back to the system and asks for again is not free: the kernel
zeroes it on the next touch and the hypervisor may have to back it again. A build allocates and frees large
arrays stage after stage, so on the 2-vCPU VM of BENCHMARKS.md zeroing fresh pages (``clear_page_erms``) was
the largest single cost of the 100M-review build after reading. Two settings keep that memory in the process:

- :func:`prefer_jemalloc`: Arrow's buffers (the encoders' hash tables) from jemalloc with a 10 s decay.
- :func:`keep_freed_memory`: numpy's arrays from one glibc heap that is never trimmed, instead of an ``mmap``
  per array larger than 32 MiB that is unmapped when freed (the 100M build 202 -> 188 s, its split 9.7 -> 4.9 s,
  its writing 10.6 -> 7.0 s). It is process-wide, so only the ``mmprep build`` command-line process applies it
  (:func:`mmprep.cli.run`), before any thread starts; the library functions leave the caller's allocator alone.

Both step aside when the user chose an allocator through the environment.
"""

from __future__ import annotations

import ctypes
import os
import platform

import pyarrow as pa

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
_GLIBC_ENV = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")


def prefer_jemalloc() -> None:
    """Make jemalloc Arrow's default allocator, unless ``ARROW_DEFAULT_MEMORY_POOL`` chooses one.

    Every batch's hash tables are fresh allocations of tens of MiB that Arrow's default mimalloc hands back to
    the system at once, so the next batch faults (and the kernel zeroes) them again: on the 10M-review dump the
    two encoding threads spent half their time in those page faults. jemalloc, with freed pages kept for 10 s
    (pyarrow's default decay is 0: back at once), reuses them: reading 25.5 -> 18.5 s, system time 13 -> 8 s
    (BENCHMARKS.md); :meth:`_Collector.finish` hands them back before the filter. Builds without jemalloc keep
    the default.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        return
    if pa.default_memory_pool().backend_name != pool.backend_name:
        pa.set_memory_pool(pool)
    pa.jemalloc_set_decay_ms(10_000)


def keep_freed_memory() -> bool:
    """Have glibc serve every ``malloc`` from one never-trimmed heap, so freed memory is reused in place.

    ``M_MMAP_MAX`` 0: no allocation gets its own ``mmap`` (they would be unmapped on free and faulted in again);
    ``M_ARENA_MAX`` 1: threads share the main heap (another arena's heap cannot hold an allocation above
    64 MiB and would map it anyway); ``M_TRIM_THRESHOLD`` the largest value: the heap's free top is kept. The
    price is that the process's memory does not shrink before it exits; its peak does not grow (the
    100M-review build peaks at 3.6-3.7 GiB either way). Returns whether the settings were applied: not on a
    C library other than glibc, nor when a ``MALLOC_*`` variable or a ``glibc.malloc`` tunable is set.
    """
    chosen = "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "") or any(map(os.environ.get, _GLIBC_ENV))
    if chosen or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt takes an int; glibc stores the trim threshold as size_t, so -1 is "never trim"
    applied = [mallopt(M_MMAP_MAX, 0), mallopt(M_ARENA_MAX, 1), mallopt(M_TRIM_THRESHOLD, -1)]
    return all(applied)
