"""What the three Amazon review releases (2014, 2018, 2023) share: JSON-lines review files, ratings-only CSVs,
review text per item, JSON-lines meta files and the HTML clean-up of item fields.

Reading is done by DuckDB's ``read_json`` with an explicit column list (streaming, only the needed fields, no
Python objects per record). When it fails, or when records lack a required field, the file is re-read as a table
of numbered lines and checked by one SQL query, so every bad line is skipped and counted (or, under ``--strict``,
reported) with its exact line number; the good records are then read again with ``ignore_errors``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmprep.errors import PrepError
from mmprep.sources import fastjson, scan, spill
from mmprep.sources.base import (
    INTERACTION_COLUMNS,
    ITEM_FIELD_TYPES,
    REVIEW_TEXT_COLUMNS,
    SkipLog,
    StreamEvent,
)
from mmprep.sources.fastjson import InflateError, inflated_blocks
from mmprep.sources.netflix import duckdb_session, is_gzip, load_lines, report_problems, sql_quote

# Review text per item: the first reviews of each item in file order, capped (a popular item has thousands).
REVIEWS_PER_ITEM = 20
REVIEW_TEXT_MAX_CHARS = 4000
_MAX_OBJECT_BYTES = 64 * 1024 * 1024
# JSON types accepted as a user or item id: a string, or a number (coerced to its text)
_ID_TYPES = "('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE')"

# Named and numeric entities that occur in the Amazon meta files, decoded without a Python loop over items.
_ENTITIES = {
    "&quot;": '"',
    "&#34;": '"',
    "&apos;": "'",
    "&#39;": "'",
    "&#039;": "'",
    "&#x27;": "'",
    "&rsquo;": "'",
    "&lsquo;": "'",
    "&rdquo;": '"',
    "&ldquo;": '"',
    "&lt;": "<",
    "&gt;": ">",
    "&nbsp;": " ",
    "&#160;": " ",
    "&ndash;": "-",
    "&mdash;": "-",
    "&hellip;": "...",
    "&reg;": "(R)",
    "&trade;": "(TM)",
    "&copy;": "(C)",
    "&deg;": " degrees",
    "&frac12;": "1/2",
    "&eacute;": "é",
    "&amp;": "&",
}


@dataclass(frozen=True)
class ReviewFields:
    """Field names of one release's review records."""

    user: str
    item: str
    rating: str
    time: str
    time_divisor: int  # 1 for Unix seconds, 1000 for milliseconds (2023)
    text: tuple[str, ...]  # summary/title first, then the body


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + sql_quote(text) + "'"


def max_object_bytes() -> int:
    """The longest JSON record read: :data:`_MAX_OBJECT_BYTES`, less under a small ``--memory-limit``
    (DuckDB allocates read buffers of twice this per thread, all of which must fit in the limit)."""
    settings = spill.current()
    return (
        _MAX_OBJECT_BYTES
        if settings is None
        else min(_MAX_OBJECT_BYTES, settings.limit_bytes // (8 * (os.cpu_count() or 1)))
    )


def _json_source(path: Path, columns: dict[str, str], ignore_errors: bool, gzip: bool | None = None) -> str:
    cols = "{" + ", ".join(f"{_lit(k)}: {_lit(v)}" for k, v in columns.items()) + "}"
    gzip = is_gzip(path) if gzip is None else gzip
    return (
        f"read_json({_lit(str(path))}, format='newline_delimited', columns={cols}, "
        f"ignore_errors={'true' if ignore_errors else 'false'}, "
        f"compression='{'gzip' if gzip else 'none'}', maximum_object_size={max_object_bytes()})"
    )


def is_ratings_csv(path: Path) -> bool:
    """Ratings-only files (``ratings_<Cat>.csv``, 2018 ``<Cat>.csv``) by name, with or without ``.gz``."""
    name = path.name.lower().removesuffix(".gz")
    return name.endswith(".csv")


def _check_lines(
    con: duckdb.DuckDBPyConnection, path: Path, required: dict[str, str], skips: SkipLog, reason: str
) -> int:
    """Number the lines of ``path``, find every line that is not a JSON object with the ``required`` fields
    (name -> DuckDB type they must cast to), and pass them to ``skips``. Returns the count."""
    load_lines(con, [path], "utf-8")
    checks = []
    for name, sql_type in required.items():
        value = f"json_extract_string(line, {_lit('$.' + _ident(name))})"
        checks.append(f"WHEN {value} IS NULL THEN {_lit('missing field ' + name)}")
        if sql_type == "VARCHAR":
            kind = f"json_type(line, {_lit('$.' + _ident(name))})"
            checks.append(
                f"WHEN {kind} NOT IN {_ID_TYPES} THEN "
                f"{_lit(name + ' is ')} || lower({kind}) || ' (expected a string or a number)'"
            )
        if sql_type != "VARCHAR":
            checks.append(
                f"WHEN TRY_CAST({value} AS {sql_type}) IS NULL THEN "
                f"{_lit(name + ' is not a number: ')} || left({value}, 40)"
            )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE checked AS SELECT file_idx, line_no, CASE "
        "WHEN NOT json_valid(line) THEN 'malformed JSON' "
        "WHEN json_type(line) <> 'OBJECT' THEN 'not a JSON object' "
        f"{' '.join(checks)} END AS problem FROM lines WHERE trim(line) <> ''"
    )
    con.execute("DROP TABLE lines")
    n = report_problems(con, "checked", [path], skips, reason)
    con.execute("DROP TABLE checked")
    return n


class _NotFast(Exception):
    """The block-wise read cannot take this file (or this block): read the whole file the exact way."""


def _fast_capable(path: Path) -> bool:
    """Whether :func:`_json_blocks` may try ``path``: a gzip file, with ``isal`` (stdlib inflate is slower
    than DuckDB's own read)."""
    return fastjson.FAST_INFLATE and is_gzip(path)


def _json_blocks(
    con: duckdb.DuckDBPyConnection, path: Path, columns: dict[str, str], select: str
) -> Iterator[pa.Table]:
    """``SELECT {select}`` over the plain blocks of the gzip file ``path`` that :func:`inflated_blocks`
    inflates ahead on another thread (inflate and parse overlap on two cores), one table per block, in file
    order. Blocks end at line ends, so the rows are those of ``read_json`` over the whole file.

    Raises :class:`_NotFast` (possibly after some blocks) when a block fails or has a record lacking a required
    field (NULL in the first column). A damaged gzip stream (bad CRC, truncated) is a located
    :class:`PrepError`, never a fallback: DuckDB's gzip reader would not notice a bad CRC.
    """
    # one DuckDB thread: the other core belongs to the inflating thread, which sets the pace
    con.execute("SET threads = 1")
    try:
        with inflated_blocks(path) as blocks:
            for block in blocks:
                try:
                    table = con.sql(f"SELECT {select} FROM {_json_source(block, columns, False, False)}")
                    table = table.to_arrow_table()
                except duckdb.OutOfMemoryException:
                    raise  # the exact path would need more memory still: the build reports the limit
                except (duckdb.Error, OSError):
                    raise _NotFast from None
                if table.num_rows and table.column(0).null_count:
                    raise _NotFast
                yield table
    except InflateError as e:
        raise scan.corrupt_stream_error(path, e) from None
    except OSError:  # no room for the block files, say: the exact read does without them
        raise _NotFast from None
    finally:
        con.execute("RESET threads")


def _read_json_blocks(
    con: duckdb.DuckDBPyConnection, path: Path, columns: dict[str, str], select: str
) -> pa.Table | None:
    """The whole of :func:`_json_blocks` as one table, or ``None`` when the file is not for the fast path
    (:func:`_fast_capable`) or a block fails: the caller then reads the whole file the exact way."""
    if not _fast_capable(path):
        return None
    try:
        tables = list(_json_blocks(con, path, columns, select))
    except _NotFast:
        return None
    return pa.concat_tables(tables) if tables else None


def _read_json_checked(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    columns: dict[str, str],
    select: str,
    required: dict[str, str],
    skips: SkipLog,
    reason: str,
) -> pa.Table:
    """``SELECT {select} FROM read_json(path)``; bad lines are located, logged and skipped.

    ``select`` must produce NULL in its first column exactly for records lacking a required field.
    """
    first = select.split(" AS ", 1)[0]
    scan.verify_compressed(path)
    try:
        table = con.sql(f"SELECT {select} FROM {_json_source(path, columns, False)}").to_arrow_table()
        if table.num_rows == 0 or table.column(0).null_count == 0:
            return table
    except duckdb.Error as e:
        error = e
    else:
        error = None
    n_bad = _check_lines(con, path, required, skips, reason)
    if error is not None and n_bad == 0:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PrepError(f"cannot read JSON lines ({message})", path)
    return con.sql(
        f"SELECT {select} FROM {_json_source(path, columns, True)} WHERE {first} IS NOT NULL"
    ).to_arrow_table()


def read_review_interactions(paths: Sequence[Path], fields: ReviewFields, skips: SkipLog) -> pa.Table:
    """All review records of ``paths`` in file order as :data:`INTERACTION_COLUMNS` (JSON lines only).

    A clean gzip file is read block by block while the next block is inflated (:func:`_json_blocks`);
    any other file is read whole by DuckDB, which locates and counts bad lines. Both give the same table.
    """
    tables = []
    with duckdb_session() as con:
        for path in paths:
            tables.append(read_review_file(con, path, fields, skips, fast=True))
    return pa.concat_tables(tables) if tables else INTERACTION_COLUMNS.empty_table()


def _review_query(fields: ReviewFields) -> tuple[dict[str, str], dict[str, str], str]:
    """``(columns read, required fields, SELECT list)`` of a review file as :data:`INTERACTION_COLUMNS`."""
    # ids are read as JSON so that a number is coerced to its text ("123") and an object, list or boolean is a
    # bad record (NULL user_id) that the exact path reports with its line
    columns = {fields.user: "JSON", fields.item: "JSON", fields.rating: "DOUBLE", fields.time: "DOUBLE"}
    required = {fields.user: "VARCHAR", fields.item: "VARCHAR"}
    user, item = _ident(fields.user), _ident(fields.item)
    select = (
        f"CASE WHEN json_type({item}) IN {_ID_TYPES} AND json_type({user}) IN {_ID_TYPES} "
        f"THEN json_extract_string({user}, '$') END AS user_id, "
        f"json_extract_string({item}, '$') AS item_id, CAST({_ident(fields.rating)} AS FLOAT) AS rating, "
        f"coalesce(CAST(floor({_ident(fields.time)} / {fields.time_divisor}) AS BIGINT), -1) AS timestamp"
    )
    return columns, required, select


def read_review_file(
    con: duckdb.DuckDBPyConnection, path: Path, fields: ReviewFields, skips: SkipLog, fast: bool
) -> pa.Table:
    """One JSON-lines review file as :data:`INTERACTION_COLUMNS`; ``fast=False`` forces the whole-file read
    (the reference the fast path is tested against)."""
    columns, required, select = _review_query(fields)
    table = _read_json_blocks(con, path, columns, select) if fast else None
    if table is None:
        table = _read_json_checked(con, path, columns, select, required, skips, "bad_lines")
    return table.cast(INTERACTION_COLUMNS)


def review_stream(
    con: duckdb.DuckDBPyConnection, path: Path, fields: ReviewFields, skips: SkipLog
) -> Iterator[pa.Table | StreamEvent]:
    """One review file as a stream of :data:`INTERACTION_COLUMNS` tables, block by block while the next block
    is inflated, so the file is never held whole. When a block needs the exact read (a bad record), a
    :data:`StreamEvent.REWIND` follows the blocks so far and then the whole file read the exact way, whose
    bad lines are located, logged and skipped: the rows are those of :func:`read_review_file`."""
    columns, required, select = _review_query(fields)
    yield StreamEvent.FILE_START
    if _fast_capable(path):
        try:
            for table in _json_blocks(con, path, columns, select):
                yield table.cast(INTERACTION_COLUMNS)
            return
        except _NotFast:
            yield StreamEvent.REWIND
    yield _read_json_checked(con, path, columns, select, required, skips, "bad_lines").cast(
        INTERACTION_COLUMNS
    )


def read_ratings_csv(
    paths: Sequence[Path],
    order: tuple[str, str, str, str],
    header: bool,
    skips: SkipLog,
    time_divisor: int = 1,
) -> pa.Table:
    """Ratings-only CSVs: four columns in ``order`` (names among user, item, rating, timestamp)."""
    tables = []
    with duckdb_session() as con:
        for path in paths:
            load_lines(con, [path], "utf-8")
            start = 2 if header else 1
            parts = ", ".join(f"trim(p[{i + 1}]) AS {name}" for i, name in enumerate(order))
            con.execute(
                "CREATE OR REPLACE TEMP TABLE parsed AS "
                "WITH s AS (SELECT file_idx, line_no, string_split(trim(line, ' \t\r'), ',') AS p "
                f"FROM lines WHERE line_no >= {start} AND trim(line) <> ''), "
                f"v AS (SELECT file_idx, line_no, len(p) AS n, {parts} FROM s) "
                "SELECT file_idx, line_no, user AS user_id, item AS item_id, "
                "CAST(TRY_CAST(rating AS DOUBLE) AS FLOAT) AS rating, "
                f"CAST(floor(TRY_CAST(timestamp AS DOUBLE) / {time_divisor}) AS BIGINT) AS timestamp, CASE "
                "WHEN n <> 4 THEN 'expected 4 comma-separated fields, found ' || n "
                "WHEN user = '' OR item = '' THEN 'empty user or item id' "
                "WHEN TRY_CAST(rating AS DOUBLE) IS NULL THEN 'rating \"' || left(rating, 40) || '\" is not a number' "
                "WHEN TRY_CAST(timestamp AS DOUBLE) IS NULL "
                "THEN 'timestamp \"' || left(timestamp, 40) || '\" is not a number' "
                "END AS problem FROM v ORDER BY file_idx, line_no"
            )
            con.execute("DROP TABLE lines")
            report_problems(con, "parsed", [path], skips)
            table = con.sql(
                "SELECT user_id, item_id, rating, timestamp FROM parsed WHERE problem IS NULL"
            ).to_arrow_table()
            con.execute("DROP TABLE parsed")
            tables.append(table.cast(INTERACTION_COLUMNS))
    return pa.concat_tables(tables) if tables else INTERACTION_COLUMNS.empty_table()


def read_review_text(paths: Sequence[Path], fields: ReviewFields, item_ids: pa.Array) -> pa.Table | None:
    """Per wanted item, its first :data:`REVIEWS_PER_ITEM` reviews (summary, then text), HTML-cleaned."""
    columns = {fields.item: "VARCHAR", **{f: "VARCHAR" for f in fields.text}}
    piece = "concat_ws('. ', " + ", ".join(f"nullif(trim({_ident(f)}), '')" for f in fields.text) + ")"
    parts = []
    with duckdb_session() as con:
        con.register("wanted", pa.table({"item_id": pa.array(item_ids).cast(pa.string())}))
        for file_idx, path in enumerate(paths):
            if is_ratings_csv(path):
                return None
            parts.append(
                f"SELECT {file_idx} AS f, row_number() OVER () AS rn, {_ident(fields.item)} AS item_id, "
                f"{piece} AS piece FROM {_json_source(path, columns, True)}"
            )
        query = (
            f"WITH r AS ({' UNION ALL '.join(parts)}), "
            "k AS (SELECT *, row_number() OVER (PARTITION BY item_id ORDER BY f, rn) AS k FROM r "
            "WHERE item_id IN (SELECT item_id FROM wanted) AND piece <> '') "
            f"SELECT item_id, left(string_agg(piece, ' ' ORDER BY f, rn), {REVIEW_TEXT_MAX_CHARS}) AS review_text "
            f"FROM k WHERE k <= {REVIEWS_PER_ITEM} GROUP BY item_id"
        )
        table = con.sql(query).to_arrow_table()
    table = table.cast(REVIEW_TEXT_COLUMNS)
    return table.set_column(1, "review_text", clean_html(table.column("review_text")))


def read_json_meta(
    paths: Sequence[Path],
    columns: dict[str, str],
    select: str,
    id_field: str,
    item_ids: pa.Array,
    skips: SkipLog,
) -> pa.Table | None:
    """Meta records (JSON lines) of the wanted items: ``select`` must yield the columns of
    :data:`ITEM_FIELD_TYPES` it knows, ``item_id`` first. Later duplicates of an id are ignored."""
    wanted = pa.array(item_ids).cast(pa.string())
    tables = []
    with duckdb_session() as con:
        for path in paths:
            table = _read_json_checked(
                con, path, columns, select, {id_field: "VARCHAR"}, skips, "bad_meta_lines"
            )
            tables.append(table.filter(pc.is_in(table.column("item_id"), value_set=wanted)))
    if not tables:
        return None
    table = pa.concat_tables(tables)
    return clean_item_fields(first_per_item(table))


def first_per_item(table: pa.Table) -> pa.Table:
    """Keep the first row of each ``item_id`` (meta files repeat some products), in first-seen order."""
    ids = table.column("item_id").to_numpy(zero_copy_only=False)
    if len(ids) == 0:
        return table
    _, first = np.unique(ids.astype(object).astype(str), return_index=True)
    return table.take(pa.array(np.sort(first)))


def clean_html(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Tags removed, common entities decoded, whitespace collapsed and trimmed; empty strings become null."""
    text = pc.replace_substring_regex(column, r"(?i)<br\s*/?>|</p>|</li>", " ")
    text = pc.replace_substring_regex(text, r"<[^>]{0,500}>", " ")
    for entity, char in _ENTITIES.items():
        text = pc.replace_substring(text, entity, char)
    text = pc.utf8_trim_whitespace(pc.replace_substring_regex(text, r"\s+", " "))
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)


def clean_item_fields(table: pa.Table) -> pa.Table:
    """Apply :func:`clean_html` to the text columns and the category names, typed as :data:`ITEM_FIELD_TYPES`."""
    for name in ("title", "brand", "description"):
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, name, clean_html(table.column(name).cast(pa.string())))
    if "categories" in table.column_names:
        i = table.column_names.index("categories")
        cats = table.column("categories").combine_chunks().cast(ITEM_FIELD_TYPES["categories"])
        flat = clean_html(pc.list_flatten(cats))
        keep = pc.is_valid(flat)
        # rebuild the lists without the names that cleaned to nothing
        lengths = pc.list_value_length(cats).fill_null(0).to_numpy()
        row = np.repeat(np.arange(len(cats)), lengths)
        kept_rows = row[keep.to_numpy(zero_copy_only=False)]
        new_offsets = np.concatenate([[0], np.cumsum(np.bincount(kept_rows, minlength=len(cats)))])
        values = flat.filter(keep)
        rebuilt = pa.ListArray.from_arrays(pa.array(new_offsets, pa.int32()), values, mask=cats.is_null())
        table = table.set_column(i, "categories", rebuilt)
    return table


def json_list_or_text(column: str) -> str:
    """SQL turning a JSON value that is a string or a list of strings into one string (list items joined)."""
    c = _ident(column)
    return (
        f"CASE WHEN json_type({c}) = 'ARRAY' THEN array_to_string(CAST({c} AS VARCHAR[]), ' ') "
        f"ELSE json_extract_string({c}, '$') END"
    )
