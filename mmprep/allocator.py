"""How a build's process allocates memory: freed memory is kept for reuse rather than given back.

On a virtual machine a page the process hands back to the system and asks for again is not free: the kernel
zeroes it on the next touch and the hypervisor may have to back it again. A build allocates and frees large
arrays stage after stage, so on the 2-vCPU VM of BENCHMARKS.md zeroing fresh pages (``clear_page_erms``) was
the largest single cost of the 100M-review build after reading. Two settings keep that memory in the process:

- :func:`prefer_jemalloc`: Arrow's buffers (the encoders' hash tables) from jemalloc with a 10 s decay.
- :func:`mmformat.allocator.keep_freed_memory`: numpy's arrays from one glibc heap that is never trimmed, instead
  of an ``mmap`` per array larger than 32 MiB that is unmapped when freed (the 100M build 202 -> 188 s, its split
  9.7 -> 4.9 s, its writing 10.6 -> 7.0 s). It is process-wide, so only the ``mmprep build`` command-line
  process applies it (:func:`mmprep.cli.run`), before any thread starts.

Both step aside when the user chose an allocator through the environment.
"""

from __future__ import annotations

import os

import pyarrow as pa


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
