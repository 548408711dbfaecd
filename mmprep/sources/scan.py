"""Line-by-line reading with exact error locations.

The fast paths (DuckDB) read whole files at once and report errors vaguely. When they fail, or to count and
skip bad records, sources re-read the file here, which knows the line number of every problem: a truncated gzip
stream, bytes that are not UTF-8, a line that does not parse, a missing required field.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from mmformat.uncached import open_uncached
from mmprep.errors import PrepError

try:
    from isal.igzip import open as _open_gzip

    FAST_GZIP = True
except ImportError:  # optional dependency; stdlib gzip checks the same CRC, only slower
    from gzip import open as _open_gzip

    FAST_GZIP = False

_VERIFY_BYTES = 4 * 1024 * 1024


def open_binary(path: Path) -> io.BufferedIOBase:
    """Open a plain or gzip-compressed file for binary reading (by magic bytes, not by extension)."""
    path = Path(path)
    if not path.is_file():
        raise PrepError("file not found", path)
    f = open(path, "rb")
    magic = f.read(2)
    f.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    return f


@contextmanager
def open_gzip_once(path: Path) -> Iterator[BinaryIO]:
    """The inflated stream of the gzip file ``path``, for one read from start to end: ``isal.igzip`` when
    installed (else stdlib ``gzip``) over :func:`~mmformat.uncached.open_uncached`, so that a large dump
    does not fill the page cache."""
    with open_uncached(path) as raw, _open_gzip(raw) as stream:
        yield stream


def iter_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` (1-based, without the newline).

    Raises a located :class:`PrepError` for a truncated or corrupt gzip stream; undecodable bytes raise one
    too unless ``encoding`` tolerates them (e.g. ``latin-1``).
    """
    lineno = 0
    with open_binary(path) as f:
        try:
            for lineno, raw in enumerate(f, start=1):
                try:
                    text = raw.decode(encoding)
                except UnicodeDecodeError as e:
                    raise PrepError(
                        f"invalid {encoding} byte at column {e.start + 1}", path, lineno
                    ) from None
                yield lineno, text.rstrip("\r\n")
        except EOFError:
            raise PrepError("truncated gzip stream (file ends mid-record)", path, lineno + 1) from None
        except (gzip.BadGzipFile, zlib.error, OSError) as e:
            raise PrepError(f"corrupt compressed data ({e})", path, lineno + 1) from None


def corrupt_stream_error(path: Path, error: BaseException) -> PrepError:
    """The located error for a compressed file that failed to inflate (bad CRC, truncated, garbage).

    Re-reads the file line by line to name the line where the stream breaks; runs only on the error path.
    """
    try:
        for _ in iter_lines(path, "latin-1"):
            pass
    except PrepError as located:
        return located
    return PrepError(f"corrupt compressed data ({error})", path)


def verify_compressed(path: Path) -> None:
    """Inflate a gzip file to its end, so its CRC and length are checked; a plain file passes unchecked.

    DuckDB's own gzip reader does not check the CRC trailer, so a file with a flipped byte could otherwise be
    read with wrong values; every DuckDB read of a gzip file is preceded by this (or by a checked inflate).
    """
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            return
    try:
        with open_gzip_once(path) as stream:
            while stream.read(_VERIFY_BYTES):
                pass
    except (EOFError, OSError, zlib.error, ValueError) as e:
        raise corrupt_stream_error(path, e) from None


def first_problem(
    path: Path,
    parse: Callable[[str], Any],
    check: Callable[[Any], str | None] | None = None,
    encoding: str = "utf-8",
    skip_blank: bool = True,
) -> tuple[int, str] | None:
    """The first ``(line, problem)`` of a file, or None. ``parse`` raises on a malformed line;
    ``check`` returns a problem string (e.g. a missing field) or None."""
    for problem in iter_problems(path, parse, check, encoding, skip_blank):
        return problem
    return None


def iter_problems(
    path: Path,
    parse: Callable[[str], Any],
    check: Callable[[Any], str | None] | None = None,
    encoding: str = "utf-8",
    skip_blank: bool = True,
) -> Iterator[tuple[int, str]]:
    """Every ``(line, problem)`` of a file. Stream errors (truncation, encoding) are raised, not yielded."""
    for lineno, text in iter_lines(path, encoding):
        if skip_blank and not text.strip():
            continue
        try:
            record = parse(text)
        except Exception as e:  # any parser error is a malformed line
            yield lineno, f"malformed record ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
            continue
        if check is not None:
            problem = check(record)
            if problem:
                yield lineno, problem
