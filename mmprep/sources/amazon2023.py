"""Amazon Reviews 2023 (Hou et al.): ``<Cat>.jsonl(.gz)`` reviews, ``<Cat>.csv`` ratings and
``meta_<Cat>.jsonl(.gz)``.

Items are identified by ``parent_asin`` (the product, not the variant), as the release recommends; timestamps are
milliseconds and are converted to Unix seconds; the image URL is the first listed image's largest version.
"""

from __future__ import annotations

from mmprep.sources.amazon_common import ReviewFields, json_list_or_text
from mmprep.sources.amazon_source import AmazonSource
from mmprep.sources.base import register

FIELDS = ReviewFields(
    user="user_id",
    item="parent_asin",
    rating="rating",
    time="timestamp",
    time_divisor=1000,
    text=("title", "text"),
)
_META_COLUMNS = {
    "parent_asin": "VARCHAR",
    "title": "JSON",
    "store": "JSON",
    "categories": "JSON",
    "description": "JSON",
    "images": "JSON",
}
_META_SELECT = (
    "parent_asin AS item_id, "
    f"{json_list_or_text('title')} AS title, "
    f"{json_list_or_text('store')} AS brand, "
    "CASE WHEN json_type(categories) = 'ARRAY' THEN CAST(categories AS VARCHAR[]) END AS categories, "
    f"{json_list_or_text('description')} AS description, "
    "coalesce(json_extract_string(images, '$[0].hi_res'), json_extract_string(images, '$[0].large'), "
    "json_extract_string(images, '$[0].thumb')) AS image_url"
)


@register
class Amazon2023Source(AmazonSource):
    """Amazon 2023 review/ratings dumps with the JSON-lines meta file."""

    name = "amazon2023"
    description = "Amazon Reviews 2023: <Cat>.jsonl(.gz) or <Cat>.csv, meta_<Cat>.jsonl(.gz)"
    roles = {
        "interactions": "<Cat>.jsonl(.gz) (JSON lines) or <Cat>.csv (user_id,parent_asin,rating,timestamp)",
        "meta": "meta_<Cat>.jsonl(.gz) (optional; JSON lines)",
    }

    fields = FIELDS
    csv_order = ("user", "item", "rating", "timestamp")
    csv_header = True
    meta_id = "parent_asin"
    meta_columns = _META_COLUMNS
    meta_select = _META_SELECT
