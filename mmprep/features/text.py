"""Item text for text encoders, built column-wise with pyarrow from ``items.parquet`` fields.

Default (MMRec ``3feat-encoder``): ``title brand <first category path> description`` joined by spaces, the first
category path's elements joined by spaces; a dataset where no item has any of them (a dump without a meta
file, built with ``--item-text reviews``) uses ``review_text`` instead. The pseudo-field ``all_categories`` is every element of every category
path in order (as LATTICE/MICRO use them; also the way to use every genre of a MovieLens item). A ``--template`` such as ``"{title}. Brand: {brand}. {description}"``
replaces the plain join; its placeholders name the fields used. HTML tags and entities are removed and whitespace
collapsed. An item whose used fields are all empty has no text (mask False).
"""

from __future__ import annotations

import html
import string
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmprep.errors import PrepError

DEFAULT_FIELDS = ("title", "brand", "categories", "description")
TEXT_FIELDS = ("title", "brand", "categories", "all_categories", "description", "review_text")


def clean_text(arr: pa.Array) -> pa.Array:
    """Strip HTML tags and entities, collapse whitespace, trim; nulls become empty strings."""
    arr = pc.fill_null(arr.cast(pa.string()), "")
    arr = pc.replace_substring_regex(arr, r"<[^>]*>", " ")
    has_entity = np.asarray(pc.match_substring_regex(arr, r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);"), dtype=bool)
    if has_entity.any():  # only the few strings that carry entities go through Python
        values = arr.to_numpy(zero_copy_only=False).astype(object)
        values[has_entity] = [html.unescape(v) for v in values[has_entity]]
        arr = pa.array(values, type=pa.string())
    arr = pc.replace_substring_regex(arr, r"\s+", " ")
    return pc.utf8_trim_whitespace(arr)


def field_text(items: pa.Table, field: str) -> pa.Array:
    """One field as cleaned strings; ``categories`` is the first category path, its elements space-joined;
    ``all_categories`` every path's elements."""
    if field not in TEXT_FIELDS:
        raise PrepError(f"unknown text field {field!r} (choose from {', '.join(TEXT_FIELDS)})")
    col = items.column("categories" if field == "all_categories" else field).combine_chunks()
    if field in ("categories", "all_categories"):
        paths = pc.list_slice(col, 0, 1) if field == "categories" else col
        col = pc.replace_substring(pc.fill_null(pc.binary_join(paths, " > "), ""), " > ", " ")
    return clean_text(col)


def default_fields(items: pa.Table) -> list[str]:
    """``DEFAULT_FIELDS`` when some item has one of them, else ``review_text`` when it has content, else a
    clear error (an empty default field adds nothing to the joined text, so it is kept for the record)."""

    def has_content(field: str) -> bool:
        return bool(pc.any(pc.greater(pc.utf8_length(field_text(items, field)), 0)).as_py())

    if any(has_content(f) for f in DEFAULT_FIELDS):
        return list(DEFAULT_FIELDS)
    if not has_content("review_text"):
        raise PrepError(
            f"no item has text in any of {', '.join((*DEFAULT_FIELDS, 'review_text'))}; "
            "the dataset has no item text to encode (build it with --item-text meta or reviews)"
        )
    return ["review_text"]


def template_fields(template: str) -> list[str]:
    """Field names used by a ``str.format``-style template, in order of first use."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise PrepError(f"bad --template {template!r}: {e}") from None
    names: list[str] = []
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if spec or conv or not name:
            raise PrepError(f"bad --template {template!r}: use plain {{field}} placeholders")
        if name not in names:
            names.append(name)
    return names


def build_texts(
    items: pa.Table, fields: Sequence[str] | None = None, template: str | None = None
) -> tuple[pa.Array, np.ndarray, list[str]]:
    """``(texts, present, fields_used)``: one string per item (row i = item_idx i) and a presence mask."""
    if template is not None:
        used = template_fields(template)
        if fields:
            extra = set(used) - set(fields)
            if extra:
                raise PrepError(f"--template uses {sorted(extra)} that --fields does not list")
    else:
        used = list(fields) if fields else default_fields(items)
    if not used:
        raise PrepError("no text fields selected")
    cols = {f: field_text(items, f) for f in used}
    present = np.zeros(items.num_rows, dtype=bool)
    for col in cols.values():
        present |= np.asarray(pc.greater(pc.utf8_length(col), 0), dtype=bool)
    if template is None:
        # empty fields leave extra spaces, which the whitespace collapse below removes
        text = pc.binary_join_element_wise(*(cols[f] for f in used), " ")
    else:
        pieces: list = []
        for literal, name, _, _ in string.Formatter().parse(template):
            if literal:
                pieces.append(pa.scalar(literal))
            if name is not None:
                pieces.append(cols[name])
        if not any(isinstance(p, pa.Array) for p in pieces):
            raise PrepError(f"--template {template!r} has no {{field}} placeholder")
        text = pc.binary_join_element_wise(*pieces, "")
    text = pc.utf8_trim_whitespace(pc.replace_substring_regex(text, r"\s+", " "))
    return text, present, used
