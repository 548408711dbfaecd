"""Amazon Reviews 2018 (Ni, Li, McAuley): ``<Cat>_5.json.gz`` / ``<Cat>.json.gz`` reviews, ``<Cat>.csv`` ratings
(item,user,rating,timestamp; no header) and ``meta_<Cat>.json.gz`` (JSON lines with HTML in the text fields)."""

from __future__ import annotations

from mmprep.sources.amazon2014 import FIELDS  # 2018 reviews keep the 2014 field names
from mmprep.sources.amazon_common import json_list_or_text
from mmprep.sources.amazon_source import AmazonSource
from mmprep.sources.base import register

_META_COLUMNS = {
    "asin": "VARCHAR",
    "title": "JSON",
    "brand": "JSON",
    "category": "JSON",
    "description": "JSON",
    "imageURLHighRes": "JSON",
    "imageURL": "JSON",
}
_META_SELECT = (
    "asin AS item_id, "
    f"{json_list_or_text('title')} AS title, "
    f"{json_list_or_text('brand')} AS brand, "
    "CASE WHEN json_type(category) = 'ARRAY' THEN CAST(category AS VARCHAR[]) "
    "WHEN json_type(category) = 'VARCHAR' THEN [json_extract_string(category, '$')] END AS categories, "
    f"{json_list_or_text('description')} AS description, "
    "coalesce(json_extract_string(imageURLHighRes, '$[0]'), json_extract_string(imageURL, '$[0]')) AS image_url"
)


@register
class Amazon2018Source(AmazonSource):
    """Amazon 2018 review/ratings dumps with the JSON-lines meta file."""

    name = "amazon2018"
    description = "Amazon Reviews 2018: <Cat>_5.json.gz or <Cat>.csv, meta_<Cat>.json.gz"
    roles = {
        "interactions": "<Cat>_5.json.gz / <Cat>.json.gz (JSON lines) or <Cat>.csv (item,user,rating,timestamp)",
        "meta": "meta_<Cat>.json.gz (optional; JSON lines)",
    }

    fields = FIELDS
    csv_order = ("item", "user", "rating", "timestamp")
    csv_header = False
    meta_id = "asin"
    meta_columns = _META_COLUMNS
    meta_select = _META_SELECT
