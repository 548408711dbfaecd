"""Amazon Reviews 2014 (McAuley et al.): ``reviews_<Cat>(_5).json.gz``, ``ratings_<Cat>.csv`` and
``meta_<Cat>.json.gz``.

The meta file holds one Python dict literal per line (single quotes, not JSON). It is never evaluated: DuckDB
extracts each line's asin with a regular expression and keeps only the lines of wanted items, and only those are
parsed with :func:`ast.literal_eval` (literals only, no code). That Python step runs once per kept item, which is
the only per-record Python work in the Amazon readers.
"""

from __future__ import annotations

import ast

import pyarrow as pa

from mmprep.sources.amazon_common import (
    ReviewFields,
    clean_item_fields,
    first_per_item,
)
from mmprep.sources.amazon_source import AmazonSource
from mmprep.sources.base import ITEM_FIELD_TYPES, register
from mmprep.sources.netflix import duckdb_session, load_lines

FIELDS = ReviewFields(
    user="reviewerID",
    item="asin",
    rating="overall",
    time="unixReviewTime",
    time_divisor=1,
    text=("summary", "reviewText"),
)
_ASIN_RE = r"""['"]asin['"]\s*:\s*['"]([^'"]+)['"]"""
_META_SCHEMA = pa.schema([(name, ITEM_FIELD_TYPES[name]) for name in ITEM_FIELD_TYPES])


def _flat_categories(value) -> list[str] | None:
    """2014 ``categories`` is a list of category paths (lists); flatten, keeping the first occurrence."""
    if not isinstance(value, list):
        return None
    seen: dict[str, None] = {}
    for path in value:
        for name in path if isinstance(path, list) else [path]:
            if isinstance(name, str):
                seen.setdefault(name, None)
    return list(seen)


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def parse_meta_literal(line: str) -> dict:
    """One meta line as a dict (a Python literal; anything that is not a literal dict raises ValueError)."""
    record = ast.literal_eval(line)
    if not isinstance(record, dict):
        raise ValueError("not a dict literal")
    return record


@register
class Amazon2014Source(AmazonSource):
    """Amazon 2014 review/ratings dumps with the Python-literal meta file."""

    name = "amazon2014"
    description = "Amazon Reviews 2014: reviews_<Cat>_5.json.gz or ratings_<Cat>.csv, meta_<Cat>.json.gz"
    roles = {
        "interactions": "reviews_<Cat>_5.json.gz / reviews_<Cat>.json.gz (JSON lines) or ratings_<Cat>.csv",
        "meta": "meta_<Cat>.json.gz (optional; one Python dict literal per line)",
    }

    fields = FIELDS
    csv_order = ("user", "item", "rating", "timestamp")

    def items(self, item_ids: pa.Array) -> pa.Table | None:
        """title, brand, categories (flattened paths), description, image_url (``imUrl``) of the wanted items."""
        paths = self.files.get("meta", required=False)
        if not paths:
            return None
        wanted = pa.table({"item_id": pa.array(item_ids).cast(pa.string())})
        columns: dict[str, list] = {name: [] for name in _META_SCHEMA.names}
        for path in paths:
            with duckdb_session() as con:
                load_lines(con, [path], "utf-8")
                con.register("wanted", wanted)
                rows = con.execute(
                    "SELECT line_no, line FROM lines WHERE regexp_extract(line, ?, 1) IN "
                    "(SELECT item_id FROM wanted) ORDER BY line_no",
                    [_ASIN_RE],
                ).fetchall()
            for line_no, line in rows:
                try:
                    record = parse_meta_literal(line)
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
                    self.skips.add(
                        "bad_meta_lines", path, line_no, f"not a Python dict literal ({type(e).__name__})"
                    )
                    continue
                asin = record.get("asin")
                if not isinstance(asin, str):
                    self.skips.add("bad_meta_lines", path, line_no, "missing field asin")
                    continue
                columns["item_id"].append(asin)
                columns["title"].append(_text(record.get("title")))
                columns["brand"].append(_text(record.get("brand")))
                columns["categories"].append(_flat_categories(record.get("categories")))
                columns["description"].append(_text(record.get("description")))
                columns["image_url"].append(_text(record.get("imUrl")))
        table = pa.table(columns, schema=_META_SCHEMA)
        return clean_item_fields(first_per_item(table))
