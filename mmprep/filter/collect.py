"""Read a source's interaction stream into integer codes without holding the raw ids of every row.

The raw ids are what makes a large dump big in memory (about 65 bytes a review as Arrow strings). Here the
stream's blocks are gathered into batches of about :data:`BATCH_BYTES` of ids, each batch is encoded to int32
first-appearance codes (:class:`~mmprep.filter.encode.Vocabulary`, which keeps each distinct id once) and
dropped; rating and timestamp go to :class:`~mmprep.filter.columns.ColumnSink` columns, on disk when a
folder is given. What stays in memory is 8 bytes a row plus the vocabularies.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from mmprep.allocator import prefer_jemalloc
from mmprep.errors import PrepError
from mmprep.filter.columns import ColumnSink
from mmprep.filter.encode import MAX_ID_BYTES, IdTooLongError, Vocabulary
from mmprep.sources.base import StreamEvent

BATCH_BYTES = 96 << 20


@dataclass
class Collected:
    """The raw interactions as codes (``u_vocab.take(u_codes)[r]`` is the user of row ``r``) and sunk columns."""

    u_codes: np.ndarray | None
    i_codes: np.ndarray | None
    u_vocab: Vocabulary
    i_vocab: Vocabulary
    rating: ColumnSink
    timestamp: ColumnSink

    @property
    def rows(self) -> int:
        return self.rating.rows

    def close(self) -> None:
        """Delete the sunk columns' files."""
        self.rating.close()
        self.timestamp.close()


class _Collector:
    """The state of one collection: encoders, code parts, sinks, the batch being gathered, a checkpoint.

    A full batch is encoded on a background thread while the next one is parsed and gathered (parsing and
    encoding overlap on two cores); at most one batch is in encoding at a time, so the codes stay in order.
    """

    def __init__(self, folder: Path | None, batch_bytes: int) -> None:
        self.users = Vocabulary()
        self.items = Vocabulary()
        self.u_parts: list[np.ndarray] = []
        self.i_parts: list[np.ndarray] = []
        self.rating = ColumnSink(np.float32, "rating", folder)
        self.timestamp = ColumnSink(np.int64, "timestamp", folder)
        self.batch: list[pa.Table] = []
        self.batch_bytes, self.pending = batch_bytes, 0
        self.checkpoint = (0, 0, 0, 0)
        self.file_first_row = 0  # rows before the file being read (records are numbered within a file)
        # users are encoded on one thread while items are on another (numpy and Arrow free the GIL)
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.in_flight: Future[None] | None = None

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self.batch.append(table)
        self.pending += table.column("user_id").nbytes + table.column("item_id").nbytes
        if self.pending >= self.batch_bytes:
            self.flush()

    def flush(self) -> None:
        """Hand the gathered batch to the encoding thread (after the previous batch is done)."""
        self.wait()
        if not self.batch:
            return
        batch = pa.concat_tables(self.batch)
        self.batch, self.pending = [], 0
        self.in_flight = self.pool.submit(self._encode, batch)

    def wait(self) -> None:
        """Block until the batch in encoding is done (its error, if any, is raised here)."""
        if self.in_flight is not None:
            future, self.in_flight = self.in_flight, None
            future.result()

    def _encode(self, batch: pa.Table) -> None:
        users = self.pool.submit(self._codes, self.users, batch, "user")
        self.i_parts.append(self._codes(self.items, batch, "item"))
        self.u_parts.append(users.result())
        self.rating.append(batch.column("rating").fill_null(np.nan).to_numpy())
        self.timestamp.append(batch.column("timestamp").fill_null(-1).to_numpy())

    def _codes(self, vocabulary: Vocabulary, batch: pa.Table, which: str) -> np.ndarray:
        """The codes of the batch's ``which`` ids; an id too long to encode is a user error naming its record."""
        try:
            return vocabulary.encode(batch.column(f"{which}_id"))
        except IdTooLongError as e:
            record = self.rating.rows - self.file_first_row + e.row + 1  # the batch's rows are not sunk yet
            raise PrepError(
                f"record {record}: the {which} id is {e.length} bytes long; ids of up to {MAX_ID_BYTES} bytes "
                "are supported"
            ) from None

    def mark(self) -> None:
        self.flush()
        self.wait()
        self.checkpoint = (len(self.u_parts), self.rating.rows, len(self.users), len(self.items))
        self.file_first_row = self.rating.rows

    def rewind(self) -> None:
        self.wait()
        self.batch, self.pending = [], 0
        parts, rows, n_users, n_items = self.checkpoint
        del self.u_parts[parts:], self.i_parts[parts:]
        self.rating.truncate(rows)
        self.timestamp.truncate(rows)
        self.users.truncate(n_users)
        self.items.truncate(n_items)

    def finish(self) -> Collected:
        self.flush()
        self.wait()
        self.pool.shutdown()
        self.users.compact()  # the hash tables are not needed from here on
        self.items.compact()
        # the pages jemalloc kept for the next batch (prefer_jemalloc) go back before the filter needs memory
        pa.default_memory_pool().release_unused()
        u_codes = _concat(self.u_parts)
        i_codes = _concat(self.i_parts)
        return Collected(u_codes, i_codes, self.users, self.items, self.rating, self.timestamp)

    def abort(self) -> None:
        with suppress(BaseException):  # the error being raised already is the one to report
            self.wait()
        self.pool.shutdown()
        self.rating.close()
        self.timestamp.close()


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    """One int32 array of ``parts``, emptying the list as it goes (so the parts are freed early)."""
    out = np.empty(sum(len(p) for p in parts), dtype=np.int32)
    start = 0
    while parts:
        part = parts.pop(0)
        out[start : start + len(part)] = part
        start += len(part)
    return out


def collect(
    stream: Iterable[pa.Table | StreamEvent], folder: Path | None = None, batch_bytes: int | None = None
) -> Collected:
    """Encode a :meth:`~mmprep.sources.base.Source.interaction_stream` in batches of ``batch_bytes`` of ids
    (default :data:`BATCH_BYTES`); rating and timestamp are written to ``folder`` when given (else kept in
    memory). The caller closes the result."""
    prefer_jemalloc()
    collector = _Collector(folder, batch_bytes or BATCH_BYTES)
    try:
        for item in stream:
            if item is StreamEvent.FILE_START:
                collector.mark()
            elif item is StreamEvent.REWIND:
                collector.rewind()
            else:
                collector.add(item)
        return collector.finish()
    except BaseException:
        collector.abort()
        raise
