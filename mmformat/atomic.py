"""Atomic file and directory writes: build under a temporary name, then rename into place.

Temporary names carry the writer's pid (``.<name>.tmp-<pid>-<random>``), so a later run can tell the leftovers
of a killed writer (kill -9, power loss) from the work of a live one and remove them (``remove_stale_temps``).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmformat.errors import UserError

_STALE = re.compile(r"\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)(?:-.*)?")
WRITER = "mmprep"  # the tool named in "another <tool> is writing ..." (mmtrain sets its own)


def _read_umask() -> int:
    """The process umask without changing it (Linux ``/proc``); elsewhere read once at import, when a flip
    cannot race another thread's file creation."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _read_umask()


def umask() -> int:
    """The current umask, read without the set-and-restore dance that would race other threads' writes."""
    if os.path.exists("/proc/self/status"):
        return _read_umask()
    return _UMASK_AT_IMPORT


def _prefix(name: str, kind: str = "tmp") -> str:
    return f".{name}.{kind}-{os.getpid()}-"


def temp_dir(parent: Path, name: str) -> Path:
    """A new temporary directory for ``name`` in ``parent`` with the umask's permissions (mkdtemp alone gives
    0700, which would hide a dataset from other users and container uids sharing a volume)."""
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(name), dir=parent))
    os.chmod(tmp, 0o777 & ~umask())
    return tmp


def temp_file(parent: Path, name: str) -> tuple[int, str]:
    """``(fd, path)`` of a new temporary file for ``name`` in ``parent`` with the umask's permissions."""
    fd, tmp = tempfile.mkstemp(prefix=_prefix(name), dir=parent)
    os.chmod(tmp, 0o666 & ~umask())
    return fd, tmp


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine; one of another user counts as alive (not ours to clean)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(parent: Path, name: str | None = None) -> list[Path]:
    """Remove the ``.<name>.tmp-<pid>-*`` / ``.old-<pid>`` leftovers in ``parent`` whose writer is dead.

    ``name`` limits the sweep to one target; returns what was removed. A live writer's files are kept.
    """
    parent = Path(parent)
    removed = []
    if not parent.is_dir():
        return removed
    for entry in parent.iterdir():
        match = _STALE.fullmatch(entry.name)
        if not match or (name is not None and match.group("name") != name):
            continue
        pid = int(match.group("pid"))
        if pid == os.getpid() or pid_alive(pid):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished directory ``tmp`` to ``target``, replacing what is there."""
    if target.exists():
        old = target.parent / f"{_prefix(target.name, 'old')}{os.urandom(3).hex()}"
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def _lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


@contextmanager
def write_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking ``flock`` on ``.<name>.lock`` beside ``target`` while writing it.

    A second writer of the same target fails at once with one line naming the holder's pid. The lock file is
    removed on release; a writer that finds its freshly locked file already unlinked (a race with that
    removal) opens the new one instead.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    path = _lock_path(target)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise UserError(f"another {WRITER} is writing {target} (pid {holder})") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield
    finally:
        Path(path).unlink(missing_ok=True)
        os.close(fd)


@contextmanager
def atomic_dir(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``target``, on any error it is removed.

    The whole write holds :func:`write_lock` on ``target``, and dead writers' temporaries are swept first.
    """
    target = Path(target)
    with write_lock(target):
        if target.exists() and not overwrite:
            raise UserError("output already exists (use --overwrite to replace it)", target)
        remove_stale_temps(target.parent, target.name)
        tmp = temp_dir(target.parent, target.name)
        try:
            yield tmp
            replace_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _named(e: OSError, path: Path) -> OSError:
    """``e`` with the final path as its filename when it has none (a full disk reported by a writer that does
    not know the file), so the CLI's one line names the file."""
    if e.filename is not None or e.errno is None:
        return e
    return OSError(e.errno, e.strerror or str(e), str(path))


def replace_from_tmp(path: Path, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it to ``path``; on any
    error (a full disk included) the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path.parent, path.name)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise _named(e, path) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_many(writes: dict[Path, Callable[[str], Any]]) -> None:
    """Write several files to temporaries first and rename them into place only when all were written, so a
    failure (a full disk) leaves every old file as it was and no temporary behind."""
    temps: dict[Path, str] = {}
    try:
        for path, write in writes.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = temp_file(path.parent, path.name)
            os.close(fd)
            temps[path] = tmp
            write(tmp)
        for path, tmp in temps.items():
            os.replace(tmp, path)
    except BaseException as e:
        for tmp in temps.values():
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _named(e, path) from e
        raise


def save_npy(tmp: str, array: np.ndarray) -> None:
    """``np.save`` to the path ``tmp`` (for :func:`replace_from_tmp` and :func:`replace_many`)."""
    with open(tmp, "wb") as f:
        np.save(f, array)


def write_text(path: Path, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    replace_from_tmp(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (indented, sorted keys, trailing newline)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(path: Path, table: pa.Table) -> None:
    """Write a Parquet file atomically with zstd compression and no pandas metadata."""
    write_parquet_tables(path, table.schema, [table])


# rows per Parquet row group (Arrow's default, so the files are those pq.write_table wrote before)
ROW_GROUP_ROWS = 1 << 20


def write_parquet_tables(path: Path, schema: pa.Schema, tables: Iterable[pa.Table]) -> None:
    """Write ``tables`` (each of ``schema``) as one Parquet file, atomically, one table at a time, so only one
    is in memory. Row groups hold at most :data:`ROW_GROUP_ROWS` rows, cut within each table: tables whose sizes
    are multiples of it give the bytes one table of all their rows would (:func:`write_parquet`)."""
    schema = schema.remove_metadata()

    def write(tmp: str) -> None:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for table in tables:
                writer.write_table(table.replace_schema_metadata(None), row_group_size=ROW_GROUP_ROWS)

    replace_from_tmp(path, write)


def write_npy(path: Path, array: np.ndarray) -> None:
    """Write a ``.npy`` file atomically."""
    replace_from_tmp(path, lambda tmp: save_npy(tmp, array))
