"""The reader shared by the three Amazon releases; each release module only names its fields."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from mmprep.sources.amazon_common import (
    ReviewFields,
    is_ratings_csv,
    read_json_meta,
    read_ratings_csv,
    read_review_interactions,
    read_review_text,
    review_stream,
)
from mmprep.sources.base import INTERACTION_COLUMNS, SkipLog, Source, StreamEvent
from mmprep.sources.netflix import duckdb_session


def read_interactions(
    paths: list[Path], fields: ReviewFields, skips: SkipLog, csv_order: tuple[str, ...], csv_header: bool
) -> pa.Table:
    """Review JSON lines and ratings-only CSVs, in the given file order."""
    tables = []
    for path in paths:
        if is_ratings_csv(path):
            tables.append(read_ratings_csv([path], csv_order, csv_header, skips, fields.time_divisor))
        else:
            tables.append(read_review_interactions([path], fields, skips))
    return pa.concat_tables(tables) if tables else INTERACTION_COLUMNS.empty_table()


class AmazonSource(Source):
    """Reviews (JSON lines) or ratings CSVs as interactions, review text per item, JSON-lines meta as items.

    Subclasses set :attr:`fields`, the ratings-CSV layout and the meta columns; a release whose meta file is not
    JSON (2014) overrides :meth:`items`.
    """

    fields: ClassVar[ReviewFields]
    csv_order: ClassVar[tuple[str, str, str, str]]
    csv_header: ClassVar[bool] = False
    meta_id: ClassVar[str] = ""
    meta_columns: ClassVar[dict[str, str]] = {}
    meta_select: ClassVar[str] = ""

    def interactions(self) -> pa.Table:
        paths = self.files.get("interactions")
        return read_interactions(paths, self.fields, self.skips, self.csv_order, self.csv_header)

    def interaction_stream(self) -> Iterator[pa.Table | StreamEvent]:
        """Review files block by block (:func:`review_stream`); ratings CSVs whole."""
        with duckdb_session() as con:
            for path in self.files.get("interactions"):
                if is_ratings_csv(path):
                    yield StreamEvent.FILE_START
                    yield read_ratings_csv(
                        [path], self.csv_order, self.csv_header, self.skips, self.fields.time_divisor
                    )
                else:
                    yield from review_stream(con, path, self.fields, self.skips)

    def review_text(self, item_ids: pa.Array) -> pa.Table | None:
        return read_review_text(self.files.get("interactions"), self.fields, item_ids)

    def items(self, item_ids: pa.Array) -> pa.Table | None:
        paths = self.files.get("meta", required=False)
        if not paths:
            return None
        return read_json_meta(paths, self.meta_columns, self.meta_select, self.meta_id, item_ids, self.skips)
