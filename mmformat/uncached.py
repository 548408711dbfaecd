"""Read a large file once without passing it through the page cache (``O_DIRECT``).

A dump read once per build gains nothing from the page cache, and on a machine whose RAM it exceeds it costs
twice: the kernel spends system time filling cache pages with it (5.4 s of system time for the 2.45 GB
10M-review dump, against 0.25 s read directly), and, once the cache is full, every fresh allocation of the
build after reading has to reclaim a cache page first (the 100M-review build's split took 12.5 s with the
cache full of the dump and 6.2 s without; BENCHMARKS.md). Files of at least :data:`UNCACHED_MIN_BYTES` are
therefore read with ``O_DIRECT`` in aligned blocks, read ahead by a thread into a ring of reused buffers;
smaller files, platforms without ``O_DIRECT`` and filesystems that refuse it (tmpfs) are read the ordinary
way. The bytes are the same.

While :func:`record_digests` is active, every reader also hashes what it reads, on its read-ahead thread,
and records the sha256 of each file it reads from start to end: a build then describes its input files
without reading them a second time (the 100M-review dump is 24.7 GB).
"""

from __future__ import annotations

import errno
import hashlib
import io
import mmap
import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

UNCACHED_MIN_BYTES = 256 << 20
BLOCK_BYTES = 4 << 20  # a multiple of every logical block size O_DIRECT may require (512 B .. 64 KiB)
PREFETCH_BLOCKS = 2
_O_DIRECT = getattr(os, "O_DIRECT", 0)

FileKey = tuple[int, int, int, int]
_recorders: list[dict[FileKey, str]] = []  # the active record_digests() tables
_recorders_lock = threading.Lock()


def file_key(st: os.stat_result) -> FileKey:
    """What identifies a file's content for a recorded digest: device, inode, size and modification time."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@contextmanager
def record_digests() -> Iterator[dict[FileKey, str]]:
    """A table, filled while the context is active, of the hex sha256 of every file an :class:`UncachedReader`
    read from its start to its end, keyed by :func:`file_key` (a file changed during the read is left out)."""
    table: dict[FileKey, str] = {}
    with _recorders_lock:
        _recorders.append(table)
    try:
        yield table
    finally:
        with _recorders_lock:
            _recorders.remove(table)


class UncachedReader(io.RawIOBase):
    """A read-only binary file read with ``O_DIRECT`` when it can be (:attr:`direct` tells).

    ``O_DIRECT`` gets no readahead from the kernel, so a thread reads up to :data:`PREFETCH_BLOCKS` blocks
    ahead of the caller, into a ring of reused page-aligned buffers. ``readinto`` serves any size; :meth:`blocks`
    yields the file as views of those buffers (no copy), each valid until the next one is asked for.
    Opened inside :func:`record_digests`, the read-ahead thread also hashes the file (:meth:`hexdigest` once it
    is read to the end).
    """

    def __init__(self, path: Path, min_bytes: int = UNCACHED_MIN_BYTES) -> None:
        super().__init__()
        self.name = str(path)
        with _recorders_lock:
            self._recorders = list(_recorders)
        self._hash = hashlib.sha256() if self._recorders else None
        self._digest: str | None = None
        size = os.stat(path).st_size
        # page-aligned, as O_DIRECT requires: the block being read by the caller and those read ahead
        self._buffers = [mmap.mmap(-1, BLOCK_BYTES) for _ in range(PREFETCH_BLOCKS + 1)]
        self.fd, self.direct = _open(path, direct=bool(_O_DIRECT) and size >= min_bytes)
        self._key = file_key(os.fstat(self.fd))
        self._free: queue.Queue[int] = queue.Queue()
        self._filled: queue.Queue[tuple[int, int] | BaseException] = queue.Queue()
        for i in range(len(self._buffers)):
            self._free.put(i)
        self._current: int | None = None
        self._view = memoryview(b"")
        self._start = self._end = 0
        self._eof = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read_ahead, daemon=True, name="mmformat-read")
        self._thread.start()

    def readable(self) -> bool:
        return True

    def _read_ahead(self) -> None:
        """Fill free buffers in file order until the end of the file, an error or :meth:`close`."""
        try:
            while not self._stop.is_set():
                try:
                    i = self._free.get(timeout=0.1)
                except queue.Empty:
                    continue
                n = self._read(self._buffers[i])
                if self._hash is not None:
                    self._hashed(i, n)
                self._filled.put((i, n))
                if n == 0:
                    return
        except BaseException as e:  # handed to the caller, which raises it
            self._filled.put(e)

    def _hashed(self, i: int, n: int) -> None:
        """Add buffer ``i``'s ``n`` new bytes to the hash; at the end of the file, publish the digest."""
        if n:
            with memoryview(self._buffers[i]) as view, view[:n] as part:
                self._hash.update(part)
            return
        self._digest = self._hash.hexdigest()
        if self._recorders and file_key(os.fstat(self.fd)) == self._key:
            with _recorders_lock:
                for table in self._recorders:
                    table[self._key] = self._digest

    def hexdigest(self) -> str:
        """The sha256 of the whole file, once it has been read to the end inside :func:`record_digests`."""
        if self._digest is None:
            raise ValueError(f"{self.name}: no digest (not hashed, or not read to the end)")
        return self._digest

    def _read(self, buffer: mmap.mmap) -> int:
        try:
            return os.readv(self.fd, [buffer])
        except OSError as e:
            if not (self.direct and e.errno == errno.EINVAL):
                raise
        # the filesystem accepted O_DIRECT at open but refuses the read: go on the ordinary way from here
        offset = os.lseek(self.fd, 0, os.SEEK_CUR)
        fd, self.direct = _open(Path(self.name), direct=False)
        os.lseek(fd, offset, os.SEEK_SET)
        os.dup2(fd, self.fd)
        os.close(fd)
        return os.readv(self.fd, [buffer])

    def _fill(self) -> int:
        """Hand the current block back for reading ahead and take the next; 0 at the end of the file."""
        if self._eof:
            return 0
        if self._current is not None:
            self._view.release()
            self._free.put(self._current)
            self._current = None
        item = self._filled.get()
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        i, n = item
        self._eof = n == 0
        self._current = i
        self._view = memoryview(self._buffers[i])
        self._start, self._end = 0, n
        return n

    def readinto(self, b) -> int:  # type: ignore[override]
        if self._start == self._end and not self._fill():
            return 0
        out = memoryview(b).cast("B")
        n = min(len(out), self._end - self._start)
        out[:n] = self._view[self._start : self._start + n]
        self._start += n
        return n

    def blocks(self) -> Iterator[memoryview]:
        """The rest of the file, block by block, as views of the reused buffers."""
        if self._start < self._end:
            yield self._view[self._start : self._end]
        while self._fill():
            yield self._view[: self._end]
        self._start = self._end

    def close(self) -> None:
        if not self.closed:
            self._stop.set()
            self._thread.join()
            os.close(self.fd)
            # the buffers are unmapped once no view of them is left (a caller may still hold the last block)
            self._view = memoryview(b"")
            self._buffers.clear()
        super().close()


def _open(path: Path, direct: bool) -> tuple[int, bool]:
    """A read-only descriptor, with ``O_DIRECT`` when asked and the filesystem allows it."""
    if direct:
        try:
            return os.open(path, os.O_RDONLY | _O_DIRECT), True
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
    return os.open(path, os.O_RDONLY), False


def open_uncached(path: Path, min_bytes: int = UNCACHED_MIN_BYTES) -> UncachedReader:
    """``open(path, "rb")`` for reading once, start to end: ``O_DIRECT`` for files of at least ``min_bytes``."""
    return UncachedReader(path, min_bytes)
