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
from pathlib import Path
from typing import Any

from mmprep.errors import PrepError


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
