"""The interface every raw-dump reader implements, and the bookkeeping of skipped records.

A source turns raw files into two Arrow tables:
- interactions: ``user_id string, item_id string, rating float32, timestamp int64`` (Unix seconds), one row per
  raw record, **in file order** (files in the given order, lines in file order), duplicates kept;
- items: ``item_id string`` plus any of ``title, brand, categories (list<string>), description, image_url``
  for the requested item ids (rows in any order; ids not found are simply absent).
Heavy parsing goes through DuckDB or pyarrow; Python loops are only for diagnostics of bad lines and for
formats DuckDB cannot read (the Python-literal Amazon 2014 meta file).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from mmprep.errors import PrepError

INTERACTION_COLUMNS = pa.schema(
    [("user_id", pa.string()), ("item_id", pa.string()), ("rating", pa.float32()), ("timestamp", pa.int64())]
)
ITEM_FIELD_TYPES = {
    "item_id": pa.string(),
    "title": pa.string(),
    "brand": pa.string(),
    "categories": pa.list_(pa.string()),
    "description": pa.string(),
    "image_url": pa.string(),
}
REVIEW_TEXT_COLUMNS = pa.schema([("item_id", pa.string()), ("review_text", pa.string())])


class StreamEvent(Enum):
    """Markers between the blocks of :meth:`Source.interaction_stream`."""

    FILE_START = "file start"  # a new file begins: the point a later REWIND returns to
    REWIND = "rewind"  # drop the rows since the last FILE_START: that file is read again, the exact way


@dataclass
class SkipLog:
    """Counts of records a reader skipped, by reason, with the first examples as ``file:line: problem``.

    In strict mode the first problem raises a :class:`PrepError` instead.
    """

    strict: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 20
    # per file: [records skipped, line of the first, its problem], to explain a file that yields nothing
    by_file: dict[str, list] = field(default_factory=dict)

    def add(self, reason: str, path: str | Path, line: int | None, problem: str, n: int = 1) -> None:
        if self.strict:
            raise PrepError(f"{problem} (--strict)", path, line)
        self.counts[reason] = self.counts.get(reason, 0) + n
        self.by_file.setdefault(str(path), [0, line, problem])[0] += n
        if len(self.examples) < self.max_examples:
            where = f"{path}:{line}" if line is not None else str(path)
            self.examples.append(f"{where}: {problem}")

    def to_manifest(self) -> dict:
        return {"counts": dict(sorted(self.counts.items())), "examples": list(self.examples)}


@dataclass
class SourceFiles:
    """The raw files of one dataset, by role (``interactions``, ``meta``, ``titles``, ...)."""

    roles: dict[str, list[Path]]

    def get(self, role: str, required: bool = True) -> list[Path]:
        paths = self.roles.get(role, [])
        if required and not paths:
            raise PrepError(f"no {role} file given")
        for p in paths:
            if not Path(p).is_file():
                raise PrepError("file not found", p)
        return [Path(p) for p in paths]

    def all(self) -> list[tuple[str, Path]]:
        return [(role, Path(p)) for role, paths in self.roles.items() for p in paths]


class Source(ABC):
    """A reader of one raw dump format. Subclasses register themselves in :data:`SOURCES` by ``name``."""

    name: ClassVar[str]
    description: ClassVar[str]
    roles: ClassVar[
        dict[str, str]
    ]  # role -> help text, e.g. {"interactions": "reviews_<Cat>_5.json.gz", ...}

    def __init__(self, files: SourceFiles, skips: SkipLog):
        self.files = files
        self.skips = skips

    @abstractmethod
    def interactions(self) -> pa.Table:
        """All raw interaction records in file order, schema :data:`INTERACTION_COLUMNS`."""

    def interaction_stream(self) -> Iterator[pa.Table | StreamEvent]:
        """The rows of :meth:`interactions` as a stream of tables (and :class:`StreamEvent` markers), so that
        a large dump never has to be held whole; sources that can read block by block override this."""
        yield self.interactions()

    def items(self, item_ids: pa.Array) -> pa.Table | None:
        """Item fields for ``item_ids`` from the meta file(s), or None when the source has no item metadata."""
        return None

    def review_text(self, item_ids: pa.Array) -> pa.Table | None:
        """Per item, the concatenated review summaries/texts (``--item-text reviews``), or None if unsupported."""
        return None


SOURCES: dict[str, type[Source]] = {}


def register(cls: type[Source]) -> type[Source]:
    SOURCES[cls.name] = cls
    return cls


def get_source(name: str) -> type[Source]:
    import mmprep.sources  # noqa: F401  (registers the built-in sources)

    if name not in SOURCES:
        raise PrepError(f"unknown source format {name!r} (known: {', '.join(sorted(SOURCES))})")
    return SOURCES[name]
