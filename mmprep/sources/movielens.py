"""MovieLens raw dumps (GroupLens): ml-100k, ml-1m, ml-10m, ml-20m/25m and ml-latest(-small).

Ratings files, told apart by their first line:
- ``ratings.dat`` (ml-1m, ml-10m): ``user::movie::rating::timestamp``;
- ``u.data`` (ml-100k): tab-separated ``user item rating timestamp`` (copies with ``|`` and a header line too);
- ``ratings.csv`` (ml-20m, ml-25m, ml-latest): header ``userId,movieId,rating,timestamp``.

Movie files (the ``items`` role, alias ``meta``):
- ``movies.dat``: ``id::Title (Year)::Genre|Genre`` (latin-1 in ml-1m);
- ``u.item``: ``id|title|release date|video release date|IMDb URL|`` and 19 genre flags (latin-1);
- ``movies.csv``: ``movieId,title,genres`` with titles in double quotes when they hold a comma.

Every line is loaded into a DuckDB line table and parsed by one SQL query (see :mod:`mmprep.sources.netflix`),
so bad lines are counted and located without a Python loop over the data. Genres become ``categories``, one
single-element path per genre; the placeholders ``(no genres listed)`` and ml-100k's ``unknown`` are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from mmprep.errors import PrepError
from mmprep.sources import scan
from mmprep.sources.base import INTERACTION_COLUMNS, ITEM_FIELD_TYPES, SkipLog, Source, register
from mmprep.sources.netflix import (
    clean_text,
    duckdb_session,
    fetch_table,
    load_lines,
    report_problems,
    sql_quote,
    utf8_or_latin1,
)

# The genre flag columns of ml-100k ``u.item``, in file order (the dump's ``u.genre``).
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
NO_GENRE = ("(no genres listed)", "unknown")
ITEM_SCHEMA = pa.schema([(name, ITEM_FIELD_TYPES[name]) for name in ("item_id", "title", "categories")])
ITEM_ROLES = ("items", "meta")
# A header line: its first field is a word (``userId``, ``movieId``, ``item``), never a number.
_HEADER_FIELD = re.compile(r"[A-Za-z_ ]+")
# movies.csv: id, a title that is either double-quoted (with "" inside) or free of commas and not starting with
# a quote, genres.
_CSV_MOVIE = r'^([^,]*),((?:"(?:[^"]|"")*"|[^,"][^,]*)?),([^,]*)$'
_SEP_NAMES = {"::": "::", "\t": "tab", ",": ",", "|": "|"}


@dataclass(frozen=True)
class Layout:
    """What a file looks like: its field separator (ratings) or kind (movies), and its header line if any."""

    kind: str
    header_line: int | None


def _first_record(path: Path) -> tuple[int, str] | None:
    """The line number and text of the first non-blank line (any bytes accepted), or None for an empty file."""
    for lineno, text in scan.iter_lines(path, "latin-1"):
        text = text.removeprefix("\xef\xbb\xbf").strip()
        if text:
            return lineno, text
    return None


def _header_line(lineno: int, first_field: str) -> int | None:
    return lineno if _HEADER_FIELD.fullmatch(first_field.strip().strip('"')) else None


def ratings_layout(path: Path) -> Layout:
    """The separator of a ratings file (``::``, tab, ``,`` or ``|``) and its header line, from its first line."""
    first = _first_record(path)
    if first is None:
        return Layout(",", None)
    lineno, text = first
    for sep in ("::", "\t", ",", "|"):
        if sep in text:
            return Layout(sep, _header_line(lineno, text.split(sep)[0]))
    raise PrepError(
        "cannot tell the ratings format (expected user::movie::rating::timestamp, or tab-, comma- or "
        "|-separated user, movie, rating, timestamp)",
        path,
        lineno,
    )


def movies_layout(path: Path) -> Layout:
    """``dat`` (movies.dat), ``uitem`` (ml-100k u.item) or ``csv`` (movies.csv), and the header line."""
    first = _first_record(path)
    if first is None:
        return Layout("csv", None)
    lineno, text = first
    if "::" in text:
        return Layout("dat", _header_line(lineno, text.split("::")[0]))
    if text.count("|") == 5 + len(ML100K_GENRES) - 1:
        return Layout("uitem", _header_line(lineno, text.split("|")[0]))
    return Layout("csv", _header_line(lineno, text.split(",")[0]))


def _register_layouts(con, layouts: list[Layout]) -> None:
    """Expose each file's kind and header line to SQL as the view ``_layout(file_idx, kind, header_line)``."""
    con.register(
        "_layout",
        pa.table(
            {
                "file_idx": pa.array(range(len(layouts)), pa.int32()),
                "kind": pa.array([layout.kind for layout in layouts], pa.string()),
                "header_line": pa.array([layout.header_line for layout in layouts], pa.int64()),
            }
        ),
    )


# RE2 patterns of each separator, for the whole-line check of the common case.
_SEP_RE = {"::": "::", "\t": "\\t", ",": ",", "|": "\\|"}


def _ratings_sql(file_idx: int, layout: Layout) -> str:
    """SQL appending the records of file ``file_idx`` to ``parsed``.

    A line made only of digits and separators passes one whole-line regular expression and is split as is;
    only the other lines (and timestamps too large for int64) are trimmed and checked field by field
    (``CASE`` evaluates a branch only for the rows that take it), which keeps the common case cheap. A pure
    projection of the line table, so the rows stay in file order.
    """
    sep, name = sql_quote(layout.kind), _SEP_NAMES[layout.kind]
    fast = _SEP_RE[layout.kind].join(["[0-9]+", "[0-9]+", "[0-9]+(\\.[0-9]+)?", "[0-9]+"])
    header = layout.header_line or 0
    return f"""
INSERT INTO parsed
WITH p AS (
    SELECT file_idx, line_no, string_split(line, '{sep}') AS parts, regexp_full_match(line, '{fast}') AS ok
    FROM lines WHERE file_idx = {file_idx} AND line_no <> {header} AND line <> ''
), v AS (
    SELECT file_idx, line_no, ok, len(parts) AS n,
        CASE WHEN ok THEN parts[1] ELSE trim(parts[1], ' \t\r') END AS u,
        CASE WHEN ok THEN parts[2] ELSE trim(parts[2], ' \t\r') END AS i,
        CASE WHEN ok THEN parts[3] ELSE trim(parts[3], ' \t\r') END AS r,
        CASE WHEN ok THEN parts[4] ELSE trim(parts[4], ' \t\r') END AS ts
    FROM p
), c AS (
    SELECT *, TRY_CAST(r AS DOUBLE) AS rating, TRY_CAST(ts AS BIGINT) AS t FROM v
)
SELECT file_idx, line_no, u, i, CAST(rating AS FLOAT), t,
    CASE WHEN NOT ok OR t IS NULL THEN CASE
        WHEN n = 1 AND u = '' THEN NULL
        WHEN n <> 4 THEN 'expected 4 fields (user, movie, rating, timestamp) separated by {name}, found ' || n
        WHEN NOT regexp_full_match(u, '[0-9]+') THEN 'user id "' || left(u, 40) || '" is not an integer'
        WHEN NOT regexp_full_match(i, '[0-9]+') THEN 'movie id "' || left(i, 40) || '" is not an integer'
        WHEN rating IS NULL OR NOT isfinite(rating) THEN 'rating "' || left(r, 40) || '" is not a number'
        WHEN t IS NULL THEN 'timestamp "' || left(ts, 40) || '" is not an integer (Unix seconds)'
    END END AS problem
FROM c
"""


def _movies_sql() -> str:
    """SQL parsing every movie file in ``lines`` by its kind in ``_layout`` into ``parsed``."""
    genres = "[" + ", ".join(f"'{sql_quote(g)}'" for g in ML100K_GENRES) + "]"
    no_genre = ", ".join(f"'{sql_quote(g)}'" for g in NO_GENRE)
    n_uitem = 5 + len(ML100K_GENRES)
    return f"""
CREATE TEMP TABLE parsed AS
WITH t AS (
    SELECT l.file_idx, l.line_no, trim(l.line, ' \t\r') AS s, f.kind
    FROM lines l JOIN _layout f USING (file_idx)
    WHERE l.line_no IS DISTINCT FROM f.header_line
), p AS (
    SELECT *,
        CASE kind
            WHEN 'dat' THEN string_split(s, '::')
            WHEN 'uitem' THEN string_split(s, '|')
            WHEN 'csv' THEN CASE WHEN regexp_full_match(s, '{_CSV_MOVIE}')
                THEN [regexp_extract(s, '{_CSV_MOVIE}', 1), regexp_extract(s, '{_CSV_MOVIE}', 2),
                      regexp_extract(s, '{_CSV_MOVIE}', 3)]
                ELSE [s] END
        END AS parts,
        CASE kind WHEN 'uitem' THEN {n_uitem} ELSE 3 END AS expected
    FROM t WHERE s <> ''
), v AS (
    SELECT file_idx, line_no, kind, parts, expected, len(parts) AS n, trim(parts[1]) AS id,
        CASE WHEN kind = 'csv' AND starts_with(trim(parts[2]), '"')
            THEN replace(trim(parts[2])[2:-2], '""', '"') ELSE parts[2] END AS raw_title,
        CASE WHEN kind = 'uitem'
            THEN list_filter(list_transform(range(1, {len(ML100K_GENRES) + 1}),
                    lambda k: CASE WHEN trim(parts[5 + k]) = '1' THEN {genres}[k] END),
                lambda g: g IS NOT NULL)
            ELSE list_transform(string_split(parts[3], '|'), lambda g: trim(g))
        END AS genre_list,
        kind = 'uitem' AND len(list_filter(parts[6:], lambda f: trim(f) NOT IN ('0', '1'))) > 0 AS bad_flags
    FROM p
), c AS (
    SELECT *, {clean_text("raw_title")} AS title,
        list_filter(genre_list, lambda g: g <> '' AND g NOT IN ({no_genre})) AS genres
    FROM v
)
SELECT file_idx, line_no, id AS item_id, title, CASE WHEN len(genres) > 0 THEN genres END AS categories,
    CASE
        WHEN n <> expected THEN CASE kind
            WHEN 'dat' THEN 'expected movie_id::title::genres, found ' || n || ' fields'
            WHEN 'uitem' THEN 'expected {n_uitem} |-separated fields (id, title, release date, video release '
                || 'date, IMDb URL, {len(ML100K_GENRES)} genre flags), found ' || n
            ELSE 'expected movieId,title,genres (a title holding a comma must be in double quotes)'
        END
        WHEN NOT regexp_full_match(id, '[0-9]+') THEN 'movie id "' || left(id, 40) || '" is not an integer'
        WHEN title IS NULL THEN 'empty title'
        WHEN bad_flags THEN 'genre flags must be 0 or 1'
    END AS problem
FROM c
ORDER BY file_idx, line_no
"""


def read_ratings(paths: list[Path], skips: SkipLog) -> pa.Table:
    """Every valid rating line of ``paths`` in file order, schema :data:`INTERACTION_COLUMNS`."""
    layouts = [ratings_layout(p) for p in paths]
    with duckdb_session() as con:
        load_lines(con, paths, "utf-8")
        con.execute(
            "CREATE TEMP TABLE parsed (file_idx INTEGER, line_no BIGINT, user_id VARCHAR, item_id VARCHAR, "
            "rating FLOAT, timestamp BIGINT, problem VARCHAR)"
        )
        for file_idx, layout in enumerate(layouts):  # one statement per file, appended in file order
            con.execute(_ratings_sql(file_idx, layout))
        con.execute("DROP TABLE lines")
        report_problems(con, "parsed", paths, skips)
        return fetch_table(
            con,
            "SELECT user_id, item_id, rating, timestamp FROM parsed WHERE problem IS NULL AND user_id <> ''",
            INTERACTION_COLUMNS,
        )


def read_movies(paths: list[Path], skips: SkipLog) -> pa.Table:
    """``item_id, title, categories`` of every valid movie line (the first line wins for a repeated id)."""
    layouts = [movies_layout(p) for p in paths]
    with duckdb_session() as con:
        encodings = {utf8_or_latin1(p) for p in paths}
        load_lines(con, paths, "utf-8" if encodings == {"utf-8"} else "latin-1")
        _register_layouts(con, layouts)
        con.execute(_movies_sql())
        report_problems(con, "parsed", paths, skips)
        return fetch_table(
            con,
            "SELECT item_id, title, categories FROM parsed WHERE problem IS NULL "
            "QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY file_idx, line_no) = 1 "
            "ORDER BY file_idx, line_no",
            ITEM_SCHEMA,
        )


@register
class MovieLensSource(Source):
    """GroupLens MovieLens: explicit 0.5-5 star ratings with Unix timestamps; titles and genres per movie."""

    name = "movielens"
    description = "MovieLens: ratings.dat / u.data / ratings.csv, with movies.dat / u.item / movies.csv"
    roles = {
        "interactions": "ratings.dat (ml-1m, ml-10m), u.data (ml-100k) or ratings.csv (ml-20m/25m/latest)",
        "items": "movies.dat, u.item or movies.csv (optional; titles and genres)",
        "meta": "same as items",
    }

    def interactions(self) -> pa.Table:
        """Every rating in file order (header lines skipped, bad lines counted or, with --strict, raised)."""
        return read_ratings(self.files.get("interactions"), self.skips)

    def items(self, item_ids: pa.Array) -> pa.Table | None:
        """``item_id``, ``title`` and ``categories`` (the genres) of the requested movies."""
        paths = [p for role in ITEM_ROLES for p in self.files.get(role, required=False)]
        if not paths:
            return None
        table = read_movies(paths, self.skips)
        ids = item_ids.combine_chunks() if isinstance(item_ids, pa.ChunkedArray) else pa.array(item_ids)
        return table.filter(pc.is_in(table.column("item_id"), value_set=ids.cast(pa.string())))
