"""Netflix Prize raw dump: ``combined_data_*.txt`` (or ``training_set/mv_*.txt``) and ``movie_titles.csv``.

The rating files are blocks of a ``<movie_id>:`` header line followed by ``user_id,rating,YYYY-MM-DD`` lines.
All ~100M lines are parsed in DuckDB, one file at a time: every line is loaded (read in blocks, split at the
newlines with numpy into Arrow arrays) as one text column with its file and line number, the movie id of the
last header above each line is forward-filled while loading (:func:`movie_headers`), and bad lines are found
by one SQL query, so errors name the exact file and line without a Python loop over the data. Dates become
Unix seconds at 00:00 UTC.

This module also holds the DuckDB line table shared by the other readers (:func:`duckdb_session`,
:func:`load_lines`, :func:`report_problems`, :func:`fetch_table`).
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmprep.errors import PrepError
from mmprep.sources import scan, spill
from mmprep.sources.base import INTERACTION_COLUMNS, SkipLog, Source, register

# Bytes read (after decompression) per block of lines; a longer line just spans several reads.
_BLOCK_BYTES = 16 << 20
_BOM = b"\xef\xbb\xbf"
# Roles that name the titles file (``items``/``meta`` as in the other sources).
TITLE_ROLES = ("titles", "items", "meta")
# Bad lines reported one by one before the rest of a file is counted in one entry.
_DETAILED_PROBLEMS = 1000


@contextmanager
def duckdb_session() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection that keeps file order and spills to a private temporary directory.

    Inside :func:`mmprep.sources.spill.spill_settings` (``mmprep build --memory-limit``) it uses at most that
    much memory and spills into the build's folder next to the output; otherwise DuckDB's defaults apply.
    """
    settings = spill.current()
    where = str(settings.temp_dir) if settings else None
    with tempfile.TemporaryDirectory(prefix="mmprep-duckdb-", dir=where) as tmp, duckdb.connect() as con:
        con.execute(f"SET temp_directory = '{sql_quote(tmp)}'")
        if settings:
            con.execute(f"SET memory_limit = '{settings.limit_bytes}B'")
        con.execute("SET preserve_insertion_order = true")
        con.execute("SET enable_progress_bar = false")
        yield con


def sql_quote(text: str) -> str:
    """``text`` escaped for use inside a single-quoted SQL literal."""
    return text.replace("'", "''")


def is_gzip(path: Path) -> bool:
    """True when the file starts with the gzip magic bytes (whatever its extension)."""
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def utf8_or_latin1(path: Path) -> str:
    """``utf-8`` when the whole (decompressed) file is valid UTF-8, else ``latin-1``.

    For files that the original dumps ship in latin-1 (MovieLens ``movies.dat``/``u.item``, Netflix titles)
    but that re-packaged copies may have converted to UTF-8. A damaged stream is reported later, with its line.
    """
    try:
        with scan.open_binary(path) as f:
            f.read().decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"
    except (EOFError, OSError, zlib.error):
        return "latin-1"
    return "utf-8"


def _locate_read_error(path: Path, encoding: str, error: Exception) -> PrepError:
    """Find the line that made the line reader fail (a damaged gzip stream or an undecodable byte, raised by
    the line-by-line scan). Runs only on the error path."""
    for _ in scan.iter_lines(path, encoding):
        pass
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return PrepError(f"cannot read file ({message})", path)


def _split_lines(buf: bytes) -> pa.Array:
    """The lines of ``buf`` (which ends with a newline) as an Arrow string array, without their LF or CR LF.

    Vectorised: the newline positions (numpy) give the offsets, and the text buffer is ``buf`` with every
    newline removed (``bytes.replace``), so no line is touched one by one. UTF-8 is checked by the caller.
    """
    if b"\r" in buf:
        buf = buf.replace(b"\r\n", b"\n")
    ends = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10)
    text = buf.replace(b"\n", b"")
    offsets = np.empty(len(ends) + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = ends - np.arange(len(ends))
    kind = pa.string() if len(text) < 2**31 else pa.large_string()
    if kind == pa.string():
        offsets = offsets.astype(np.int32)
    return pa.Array.from_buffers(kind, len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(text)])


def _line_batches(path: Path, encoding: str) -> Iterator[pa.Array]:
    """The lines of one file (plain or gzip) as Arrow string arrays, in file order.

    Lines end at LF or CR LF (mixed endings included); blank lines are kept and a leading UTF-8 BOM is
    dropped. Text in another encoding is converted to UTF-8 block by block; invalid UTF-8 raises.
    """
    utf8 = encoding.lower().replace("-", "").replace("_", "") == "utf8"
    carry, start = b"", True
    with scan.open_binary(path) as stream:
        while True:
            block = stream.read(_BLOCK_BYTES)
            if not block:
                if not carry:
                    return
                block, carry = carry + b"\n", b""
            else:
                cut = block.rfind(b"\n") + 1
                if cut == 0:
                    carry += block
                    continue
                block, carry = carry + block[:cut], block[cut:]
            if start:  # the first complete line holds the whole BOM, if any
                block, start = block.removeprefix(_BOM), False
            if not utf8:
                block = block.decode(encoding).encode("utf-8")
            lines = _split_lines(block)
            lines.validate(full=True)
            yield lines


def check_paths(paths: Sequence[Path]) -> list[Path]:
    """``paths`` as :class:`Path` objects; a missing file or one given twice is a :class:`PrepError`."""
    paths = [Path(p) for p in paths]
    seen = set()
    for p in paths:
        if not p.is_file():
            raise PrepError("file not found", p)
        if p.resolve() in seen:
            raise PrepError("file given twice", p)
        seen.add(p.resolve())
    return paths


# Extra per-line columns computed while loading: (lines of one batch, state left by the previous batch of the
# same file, None at a file's start) -> (columns of the batch's length, state for the next batch).
LineAnnotator = Callable[[pa.Array, Any], tuple[dict[str, pa.Array], Any]]


def load_lines(
    con: duckdb.DuckDBPyConnection,
    paths: Sequence[Path],
    encoding: str = "utf-8",
    table: str = "lines",
    annotate: LineAnnotator | None = None,
) -> None:
    """Load every line of ``paths`` into the temp table ``table(file_idx, line_no, line, <annotations>)``.

    ``file_idx`` is the position in ``paths`` and ``line_no`` the 1-based line number (blank lines are kept
    as ``''`` so numbers match the file); rows are inserted in file order. Gzip files are recognised by their
    magic bytes. A damaged stream or text that is not in ``encoding`` raises a :class:`PrepError` naming the
    file and line. ``annotate`` adds columns computed batch by batch with Arrow (vectorised).
    """
    paths = check_paths(paths)

    def chunk(idx: int, first: int, lines: pa.Array, state: Any) -> tuple[pa.Table, Any]:
        extra, state = annotate(lines, state) if annotate else ({}, None)
        n = len(lines)
        columns = {
            "file_idx": pa.array(np.full(n, idx, dtype=np.int32)),
            "line_no": pa.array(np.arange(first, first + n, dtype=np.int64)),
            "line": lines,
        }
        return pa.table({**columns, **extra}), state

    empty, _ = chunk(0, 1, pa.array([], pa.string()), None)
    con.register("_line_chunk", empty)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM _line_chunk")
    for idx, p in enumerate(paths):
        first, state = 1, None
        try:
            for lines in _line_batches(p, encoding):
                data, state = chunk(idx, first, lines, state)
                con.register("_line_chunk", data)
                con.execute(f"INSERT INTO {table} SELECT * FROM _line_chunk")
                first += len(lines)
        except (pa.ArrowException, OSError, ValueError, EOFError, zlib.error) as e:
            raise _locate_read_error(p, encoding, e) from None
    con.unregister("_line_chunk")


def report_problems(
    con: duckdb.DuckDBPyConnection,
    table: str,
    paths: Sequence[Path],
    skips: SkipLog,
    reason: str = "bad_lines",
) -> int:
    """Pass every row of ``table`` with a non-null ``problem`` to ``skips`` (strict mode raises on the first).

    The first bad lines are added one by one with their line numbers; beyond that, the rest of each file is
    added as one entry, so the count stays exact without a Python loop over a wholly wrong file.
    Returns the number of bad lines.
    """
    rows = con.execute(
        f"SELECT file_idx, line_no, problem FROM {table} WHERE problem IS NOT NULL "
        f"ORDER BY file_idx, line_no LIMIT {_DETAILED_PROBLEMS + 1}"
    ).fetchall()
    for file_idx, line_no, problem in rows[:_DETAILED_PROBLEMS]:
        skips.add(reason, paths[file_idx], line_no, problem)
    if len(rows) <= _DETAILED_PROBLEMS:
        return len(rows)
    last_file, last_line = rows[_DETAILED_PROBLEMS - 1][:2]
    rest = con.execute(
        f"SELECT file_idx, min(line_no), count(*) FROM {table} WHERE problem IS NOT NULL "
        "AND (file_idx > $f OR (file_idx = $f AND line_no > $l)) GROUP BY file_idx ORDER BY file_idx",
        {"f": last_file, "l": last_line},
    ).fetchall()
    for file_idx, line_no, n in rest:
        skips.add(reason, paths[file_idx], line_no, f"{n} bad lines from this line on", n=n)
    return _DETAILED_PROBLEMS + sum(n for _, _, n in rest)


def fetch_table(con: duckdb.DuckDBPyConnection, query: str, schema: pa.Schema) -> pa.Table:
    """Run ``query`` and return its result as an Arrow table cast to ``schema``."""
    table = con.sql(query).to_arrow_table()
    return table.cast(schema) if table.num_rows else schema.empty_table()


def clean_text(expr: str) -> str:
    """SQL for ``expr`` with whitespace collapsed and trimmed (NULL when empty)."""
    return f"nullif(trim(regexp_replace({expr}, '\\s+', ' ', 'g')), '')"


def movie_headers(lines: pa.Array, carry: str | None) -> tuple[dict[str, pa.Array], str | None]:
    """Annotate a batch of rating-file lines: ``is_header`` (a line with ``:`` and no ``,``) and ``movie``, the
    movie id of the last header at or above the line (``''`` under a malformed header, null before any).

    ``carry`` is the ``movie`` of the previous batch's last line. Vectorised: headers are found with Arrow
    kernels and forward-filled with a cumulative count, so the SQL needs no window, join or sort.
    """
    is_header = pc.and_(pc.match_substring(lines, ":"), pc.invert(pc.match_substring(lines, ",")))
    mask = is_header.to_numpy(zero_copy_only=False)
    text = pc.utf8_trim(lines.take(pa.array(np.flatnonzero(mask))), " \t\r")
    ids = pc.if_else(pc.match_substring_regex(text, "^[0-9]+:$"), pc.utf8_rtrim(text, ":"), "")
    last = np.cumsum(mask) - 1  # index into ids of the last header at or above each line, -1 if none
    movie = ids.take(pa.array(last, mask=last < 0))
    if carry is not None:
        movie = pc.fill_null(movie, carry)
    return {"is_header": is_header, "movie": movie}, (movie[-1].as_py() if len(movie) else carry)


# A rating line passes ``fast`` or, failing it, the field-by-field checks. A pure projection of the line
# table, so the rows stay in file order.
_RATINGS_SQL = """
CREATE TEMP TABLE parsed AS
WITH r AS (
    SELECT file_idx, line_no, line, is_header, movie, string_split(line, ',') AS parts,
        regexp_full_match(line, '[0-9]+,[0-9]+(\\.[0-9]+)?,[0-9]{4}-[0-9]{2}-[0-9]{2}') AS ok
    FROM lines WHERE line <> ''
), v AS (
    SELECT file_idx, line_no, line, is_header, movie, ok, len(parts) AS n,
        CASE WHEN ok THEN parts[1] ELSE trim(parts[1], ' \t\r') END AS u,
        CASE WHEN ok THEN parts[2] ELSE trim(parts[2], ' \t\r') END AS r,
        CASE WHEN ok THEN parts[3] ELSE trim(parts[3], ' \t\r') END AS d
    FROM r
), c AS (
    SELECT *, TRY_CAST(r AS DOUBLE) AS rating,
        CASE WHEN ok OR regexp_full_match(d, '[0-9]{4}-[0-9]{2}-[0-9]{2}') THEN TRY_CAST(d AS DATE) END AS day
    FROM v
)
SELECT file_idx, line_no, is_header, u AS user_id, movie AS item_id, CAST(rating AS FLOAT) AS rating,
    CAST(epoch(day) AS BIGINT) AS timestamp,
    CASE
        WHEN is_header THEN CASE WHEN movie = ''
            THEN 'bad movie header "' || left(trim(line, ' \t\r'), 40) || '" (expected <movie_id>:)' END
        WHEN n = 1 AND u = '' THEN NULL
        WHEN movie IS NULL THEN 'rating line before any "<movie_id>:" header'
        WHEN movie = '' THEN 'rating line under an invalid movie header'
        WHEN NOT ok OR day IS NULL THEN CASE
            WHEN n <> 3 THEN 'expected 3 comma-separated fields (user_id,rating,YYYY-MM-DD), found ' || n
            WHEN NOT regexp_full_match(u, '[0-9]+') THEN 'user id "' || left(u, 40) || '" is not an integer'
            WHEN rating IS NULL OR NOT isfinite(rating) THEN 'rating "' || left(r, 40) || '" is not a number'
            WHEN day IS NULL THEN 'date "' || left(d, 40) || '" is not a valid YYYY-MM-DD date'
        END
    END AS problem
FROM c
"""

_TITLES_SQL = """
CREATE TEMP TABLE parsed AS
WITH t AS (
    SELECT file_idx, line_no, trim(line, ' \t\r') AS s FROM lines
), m AS (
    SELECT file_idx, line_no, s,
        regexp_extract(s, '^([^,]*),([^,]*),(.*)$', ['id', 'year', 'title']) AS x
    FROM t WHERE s <> ''
), v AS (
    SELECT file_idx, line_no, s, trim(x.id) AS id, trim(x.year) AS year, {title} AS title FROM m
)
SELECT file_idx, line_no, id AS item_id,
    CASE WHEN upper(year) IN ('NULL', '') THEN title ELSE title || ' (' || year || ')' END AS title,
    CASE
        WHEN NOT regexp_full_match(s, '[^,]*,[^,]*,.*') THEN 'expected movie_id,year,title'
        WHEN NOT regexp_full_match(id, '[0-9]+') THEN 'movie id "' || left(id, 40) || '" is not an integer'
        WHEN NOT (regexp_full_match(year, '[0-9]{{4}}') OR upper(year) IN ('NULL', ''))
            THEN 'year "' || left(year, 40) || '" is not a year or NULL'
        WHEN title IS NULL THEN 'empty title'
    END AS problem
FROM v
ORDER BY file_idx, line_no
""".format(title=clean_text("x.title"))


@register
class NetflixSource(Source):
    """Netflix Prize training data: ratings 1-5 with a date, titles with the release year."""

    name = "netflix"
    description = "Netflix Prize: combined_data_1..4.txt (or training_set/mv_*.txt) and movie_titles.csv"
    roles = {
        "interactions": "combined_data_1.txt .. combined_data_4.txt, or training_set/mv_*.txt (.gz accepted)",
        "titles": "movie_titles.csv (optional; latin-1 movie_id,year,title)",
        "items": "same as titles",
        "meta": "same as titles",
    }

    def interactions(self) -> pa.Table:
        """Every rating line in file order; the movie id comes from the last ``<movie_id>:`` header.

        One file at a time (each is ~25M lines in the full dump), so the working set stays one file's lines.
        """
        paths = check_paths(self.files.get("interactions"))
        tables = []
        with duckdb_session() as con:
            for path in paths:
                load_lines(con, [path], "utf-8", annotate=movie_headers)
                con.execute(_RATINGS_SQL)
                con.execute("DROP TABLE lines")
                report_problems(con, "parsed", [path], self.skips)
                tables.append(
                    fetch_table(
                        con,
                        # parsed is a projection of the line table, in file order; a filtered scan keeps it
                        "SELECT user_id, item_id, rating, timestamp FROM parsed "
                        "WHERE problem IS NULL AND NOT is_header AND user_id <> ''",
                        INTERACTION_COLUMNS,
                    )
                )
                con.execute("DROP TABLE parsed")
        return pa.concat_tables(tables) if tables else INTERACTION_COLUMNS.empty_table()

    def items(self, item_ids: pa.Array) -> pa.Table | None:
        """``item_id`` and ``title`` ("Title (year)", or the bare title when the year is NULL)."""
        paths = [p for role in TITLE_ROLES for p in self.files.get(role, required=False)]
        if not paths:
            return None
        schema = pa.schema([("item_id", pa.string()), ("title", pa.string())])
        with duckdb_session() as con:
            encodings = {utf8_or_latin1(p) for p in paths}
            load_lines(con, paths, "utf-8" if encodings == {"utf-8"} else "latin-1")
            con.execute(_TITLES_SQL)
            report_problems(con, "parsed", paths, self.skips)
            table = fetch_table(
                con,
                "SELECT item_id, title FROM parsed WHERE problem IS NULL "
                "QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY file_idx, line_no) = 1 "
                "ORDER BY file_idx, line_no",
                schema,
            )
        return table.filter(pc.is_in(table.column("item_id"), value_set=pa.array(item_ids).cast(pa.string())))
