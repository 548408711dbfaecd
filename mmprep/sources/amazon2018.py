"""Amazon Reviews 2018 (Ni, Li, McAuley): ``<Cat>_5.json.gz`` / ``<Cat>.json.gz`` reviews, ``<Cat>.csv`` ratings
(item,user,rating,timestamp; no header) and ``meta_<Cat>.json.gz`` (JSON lines with HTML in the text fields)."""

from __future__ import annotations

import pyarrow as pa

from mmprep.sources.amazon2014 import read_interactions
from mmprep.sources.amazon_common import ReviewFields, json_list_or_text, read_json_meta, read_review_text
from mmprep.sources.base import Source, register

FIELDS = ReviewFields(
    user="reviewerID",
    item="asin",
    rating="overall",
    time="unixReviewTime",
    time_divisor=1,
    text=("summary", "reviewText"),
)
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
class Amazon2018Source(Source):
    """Amazon 2018 review/ratings dumps with the JSON-lines meta file."""

    name = "amazon2018"
    description = "Amazon Reviews 2018: <Cat>_5.json.gz or <Cat>.csv, meta_<Cat>.json.gz"
    roles = {
        "interactions": "<Cat>_5.json.gz / <Cat>.json.gz (JSON lines) or <Cat>.csv (item,user,rating,timestamp)",
        "meta": "meta_<Cat>.json.gz (optional; JSON lines)",
    }

    def interactions(self) -> pa.Table:
        paths = self.files.get("interactions")
        return read_interactions(paths, FIELDS, self.skips, ("item", "user", "rating", "timestamp"), False)

    def review_text(self, item_ids: pa.Array) -> pa.Table | None:
        return read_review_text(self.files.get("interactions"), FIELDS, item_ids)

    def items(self, item_ids: pa.Array) -> pa.Table | None:
        paths = self.files.get("meta", required=False)
        if not paths:
            return None
        return read_json_meta(paths, _META_COLUMNS, _META_SELECT, "asin", item_ids, self.skips)
