"""Netflix Prize raw dump: ``combined_data_*.txt`` (or ``training_set/mv_*.txt``) and ``movie_titles.csv``.

The rating files are blocks of a ``<movie_id>:`` header line followed by ``user_id,rating,YYYY-MM-DD`` lines.
All ~100M lines are parsed in DuckDB: every line is loaded (by pyarrow, in blocks) as one text column with its
file and line number, the movie id comes from the last header above the line in the same file (an ASOF join),
and bad lines are found by one SQL query, so errors name the exact file and line without a Python loop over
the data. Dates become Unix seconds at 00:00 UTC.

This module also holds the DuckDB line table used by the MovieLens reader (:func:`duckdb_session`,
:func:`load_lines`, :func:`report_problems`, :func:`fetch_table`).
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mmprep.errors import PrepError
from mmprep.sources import scan
from mmprep.sources.base import INTERACTION_COLUMNS, SkipLog, Source, register

# Each line is read as a single CSV column; this delimiter never occurs in text data (a line holding it is
# reported with its location).
_DELIM = "\x01"
# Bytes per block of the line reader (a single line longer than this cannot be read).
_BLOCK_BYTES = 16 << 20
# Roles that name the titles file (``items``/``meta`` as in the other sources).
TITLE_ROLES = ("titles", "items", "meta")
# Bad lines reported one by one before the rest of a file is counted in one entry.
_DETAILED_PROBLEMS = 1000


@contextmanager
def duckdb_session() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection that keeps file order and spills to a private temporary directory."""
    with tempfile.TemporaryDirectory(prefix="mmprep-duckdb-") as tmp, duckdb.connect() as con:
        con.execute(f"SET temp_directory = '{sql_quote(tmp)}'")
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


def first_line(path: Path) -> str:
    """The first line of a file (latin-1 decoded, so any bytes are accepted; a UTF-8 BOM is dropped)."""
    for _, text in scan.iter_lines(path, "latin-1"):
        return text.removeprefix("\xef\xbb\xbf").strip()
    return ""


def _locate_read_error(path: Path, encoding: str, error: Exception) -> PrepError:
    """Find the line that made the line reader fail: a damaged gzip stream or an undecodable byte (raised by
    the scan), or a line holding the internal delimiter. Runs only on the error path."""
    for lineno, text in scan.iter_lines(path, encoding):
        if _DELIM in text:
            return PrepError("control character U+0001 in line", path, lineno)
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return PrepError(f"cannot read file ({message})", path)


def _line_batches(path: Path, encoding: str) -> Iterator[pa.RecordBatch]:
    """The lines of one file as Arrow batches of a single string column ``line``, in file order.

    pyarrow's CSV reader with an unused delimiter and no quoting splits at ``\n``, ``\r\n`` or ``\r``
    (mixed endings included), keeps blank lines and drops a leading UTF-8 BOM.
    """
    codec = "utf8" if encoding.lower().replace("-", "") == "utf8" else encoding
    stream = pa.input_stream(str(path), compression="gzip" if is_gzip(path) else None)
    reader = pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(column_names=["line"], encoding=codec, block_size=_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(
            delimiter=_DELIM, quote_char=False, escape_char=False, ignore_empty_lines=False
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={"line": pa.string()}, strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )
    yield from reader


def load_lines(
    con: duckdb.DuckDBPyConnection, paths: Sequence[Path], encoding: str = "utf-8", table: str = "lines"
) -> None:
    """Load every line of ``paths`` into the temp table ``table(file_idx, line_no, line)``.

    ``file_idx`` is the position in ``paths`` and ``line_no`` the 1-based line number (blank lines are kept
    as ``''`` so numbers match the file). Gzip files are recognised by their magic bytes. A damaged stream
    or text that is not in ``encoding`` raises a :class:`PrepError` naming the file and line.
    """
    paths = [Path(p) for p in paths]
    seen = set()
    for p in paths:
        if not p.is_file():
            raise PrepError("file not found", p)
        if p.resolve() in seen:
            raise PrepError("file given twice", p)
        seen.add(p.resolve())
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} (file_idx INTEGER, line_no BIGINT, line VARCHAR)")
    for idx, p in enumerate(paths):
        first = 1
        try:
            for batch in _line_batches(p, encoding):
                n = batch.num_rows
                chunk = pa.table(
                    {
                        "file_idx": np.full(n, idx, dtype=np.int32),
                        "line_no": np.arange(first, first + n, dtype=np.int64),
                        "line": batch.column(0),
                    }
                )
                con.register("_line_chunk", chunk)
                con.execute(f"INSERT INTO {table} SELECT file_idx, line_no, line FROM _line_chunk")
                con.unregister("_line_chunk")
                first += n
        except (pa.ArrowException, OSError, ValueError, EOFError, zlib.error) as e:
            raise _locate_read_error(p, encoding, e) from None


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


# Lines that are neither blank nor a header go through ``fast`` or, failing it, the field-by-field checks; the
# movie id comes from the last header above the line (an ASOF join against the ~18k header lines).
_RATINGS_SQL = """
CREATE TEMP TABLE parsed AS
WITH t AS (
    SELECT file_idx, line_no, line, contains(line, ':') AND NOT contains(line, ',') AS is_header
    FROM lines WHERE line <> ''
), h AS (
    SELECT file_idx, line_no, trim(line, ' \t\r') AS s FROM t WHERE is_header
), hm AS (
    SELECT file_idx, line_no, s, CASE WHEN regexp_full_match(s, '[0-9]+:') THEN rtrim(s, ':') ELSE '' END AS movie
    FROM h
), r AS (
    SELECT t.file_idx, t.line_no, hm.movie, string_split(t.line, ',') AS parts,
        regexp_full_match(t.line, '[0-9]+,[0-9]+(\\.[0-9]+)?,[0-9]{4}-[0-9]{2}-[0-9]{2}') AS ok
    FROM t ASOF LEFT JOIN hm ON t.file_idx = hm.file_idx AND t.line_no > hm.line_no
    WHERE NOT t.is_header
), v AS (
    SELECT file_idx, line_no, movie, ok, len(parts) AS n,
        CASE WHEN ok THEN parts[1] ELSE trim(parts[1], ' \t\r') END AS u,
        CASE WHEN ok THEN parts[2] ELSE trim(parts[2], ' \t\r') END AS r,
        CASE WHEN ok THEN parts[3] ELSE trim(parts[3], ' \t\r') END AS d
    FROM r
), c AS (
    SELECT *, TRY_CAST(r AS DOUBLE) AS rating,
        CASE WHEN ok OR regexp_full_match(d, '[0-9]{4}-[0-9]{2}-[0-9]{2}') THEN TRY_CAST(d AS DATE) END AS day
    FROM v
)
SELECT file_idx, line_no, FALSE AS is_header, u AS user_id, movie AS item_id, CAST(rating AS FLOAT) AS rating,
    CAST(epoch(day) AS BIGINT) AS timestamp,
    CASE
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
UNION ALL
SELECT file_idx, line_no, TRUE, NULL, movie, NULL, NULL,
    CASE WHEN movie = '' THEN 'bad movie header "' || left(s, 40) || '" (expected <movie_id>:)' END
FROM hm
ORDER BY file_idx, line_no
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
        """Every rating line in file order; the movie id comes from the last ``<movie_id>:`` header."""
        paths = self.files.get("interactions")
        with duckdb_session() as con:
            load_lines(con, paths, "utf-8")
            con.execute(_RATINGS_SQL)
            con.execute("DROP TABLE lines")
            report_problems(con, "parsed", paths, self.skips)
            return fetch_table(
                con,
                # parsed was written sorted by (file_idx, line_no) and a filtered scan keeps that order
                "SELECT user_id, item_id, rating, timestamp FROM parsed "
                "WHERE problem IS NULL AND NOT is_header AND user_id <> ''",
                INTERACTION_COLUMNS,
            )

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
