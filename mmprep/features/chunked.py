"""Resumable feature extraction: results are saved chunk by chunk in ``features/.partial-<name>/``.

Items are processed in a fixed plan (an order of item indices cut into chunks of ``chunk_size``; batches never
cross a chunk). Each finished chunk is written atomically as ``chunk_00012.npy`` (vectors) and
``chunk_00012.ok.npy`` (which items really had content), then ``progress.json`` lists it. A run killed at any point
and started again with the same settings skips the listed chunks; since every batch is the same as in an
uninterrupted run, the assembled matrix is byte-identical. Different settings (a different fingerprint) discard
the old chunks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mmformat import layout as fmt
from mmformat.atomic import remove_stale_temps, write_json, write_npy
from mmformat.progress import bar as progress_bar

log = logging.getLogger(__name__)

PROGRESS = "progress.json"


def fingerprint(params: dict[str, Any], plan: np.ndarray) -> str:
    """sha256 of the settings that change the output and of the processing plan."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(np.ascontiguousarray(plan, dtype=np.int64).tobytes())
    return h.hexdigest()


def plan_chunks(plan: np.ndarray, chunk_size: int) -> list[np.ndarray]:
    """Cut the processing order into chunks of ``chunk_size`` item indices."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    return [plan[s : s + chunk_size] for s in range(0, len(plan), chunk_size)]


class ChunkStore:
    """The ``.partial-<name>`` directory of one extraction: finished chunks and ``progress.json``."""

    def __init__(self, root: Path, name: str, fp: str, n_chunks: int, params: dict[str, Any]):
        self.dir = Path(root) / fmt.FEATURES_DIR / f".partial-{name}"
        self.fp = fp
        self.n_chunks = n_chunks
        self.params = params
        self.done: set[int] = set()
        self.dim: int | None = None
        self._load()

    def _load(self) -> None:
        remove_stale_temps(self.dir)  # chunk files half-written by a killed run
        path = self.dir / PROGRESS
        if not path.is_file():
            if self.dir.exists():
                shutil.rmtree(self.dir)
            return
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            state = {}
        if state.get("fingerprint") != self.fp:
            log.warning("%s: settings changed since the interrupted run; starting over", self.dir)
            shutil.rmtree(self.dir)
            return
        self.dim = state.get("dim")
        self.done = {
            c for c in state.get("done", []) if self._file(c).is_file() and self._file(c, "ok").is_file()
        }
        if self.done:
            log.warning("%s: resuming, %d of %d chunks already done", self.dir, len(self.done), self.n_chunks)

    def discard_unreadable(self, chunks: list[np.ndarray]) -> list[int]:
        """Forget the finished chunks whose files do not load with the planned shape (truncated or damaged
        ``.npy``, wrong row count or width), with one warning each, so they are recomputed. Returns them."""
        bad = []
        for c in sorted(self.done):
            problem = self._chunk_problem(c, len(chunks[c]) if c < len(chunks) else -1)
            if problem:
                log.warning("%s: %s; recomputing this chunk", self._file(c), problem)
                self._file(c).unlink(missing_ok=True)
                self._file(c, "ok").unlink(missing_ok=True)
                bad.append(c)
        self.done.difference_update(bad)
        return bad

    def _chunk_problem(self, chunk: int, rows: int) -> str | None:
        """Why chunk ``chunk`` cannot be used (it should hold ``rows`` rows of width ``dim``), or None."""
        try:  # memory-mapped: only the headers are read, and a short file fails here
            vectors = np.load(self._file(chunk), mmap_mode="r", allow_pickle=False)
            ok = np.load(self._file(chunk, "ok"), mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            return f"unreadable chunk ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[0] != rows:
            return f"chunk has shape {vectors.shape} {vectors.dtype}, expected ({rows}, {self.dim}) float32"
        if self.dim is None:
            self.dim = int(vectors.shape[1])
        if vectors.shape[1] != self.dim:
            return f"chunk width {vectors.shape[1]} differs from {self.dim}"
        if ok.dtype != bool or ok.shape != (rows,):
            return f"chunk mask has shape {ok.shape} {ok.dtype}, expected ({rows},) bool"
        return None

    def _file(self, chunk: int, kind: str = "") -> Path:
        suffix = f".{kind}" if kind else ""
        return self.dir / f"chunk_{chunk:05d}{suffix}.npy"

    def save(self, chunk: int, vectors: np.ndarray, ok: np.ndarray) -> None:
        """Write one finished chunk, then record it in ``progress.json``."""
        self.dir.mkdir(parents=True, exist_ok=True)
        write_npy(self._file(chunk), np.ascontiguousarray(vectors, dtype=np.float32))
        write_npy(self._file(chunk, "ok"), np.asarray(ok, dtype=bool))
        self.done.add(chunk)
        self.dim = int(vectors.shape[1])
        state = {
            "fingerprint": self.fp,
            "params": self.params,
            "n_chunks": self.n_chunks,
            "dim": self.dim,
            "done": sorted(self.done),
        }
        write_json(self.dir / PROGRESS, state)

    def assemble(self, chunks: list[np.ndarray], n_items: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """``(matrix float32 [n_items, dim], ok bool [n_items])`` from the saved chunks; unplanned rows are 0/False."""
        matrix = np.zeros((n_items, dim), dtype=np.float32)
        ok = np.zeros(n_items, dtype=bool)
        for c, items in enumerate(chunks):
            matrix[items] = np.load(self._file(c))
            ok[items] = np.load(self._file(c, "ok"))
        return matrix, ok

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def pending_batches(
    store: ChunkStore, chunks: list[np.ndarray], batch_size: int
) -> tuple[list[np.ndarray], list[int]]:
    """The batches of the chunks not yet in ``store`` and the chunk each belongs to, in plan order.

    Saved chunks that do not load with their planned shape are recomputed first
    (:meth:`ChunkStore.discard_unreadable`). Batches never cross a chunk, so every engine encodes exactly the
    same batches and the saved chunks are the same bytes whichever engine wrote them.
    """
    store.discard_unreadable(chunks)
    batches: list[np.ndarray] = []
    owner: list[int] = []
    for c in range(len(chunks)):
        if c in store.done:
            continue
        for s in range(0, len(chunks[c]), batch_size):
            batches.append(chunks[c][s : s + batch_size])
            owner.append(c)
    return batches, owner


class ChunkAssembler:
    """Collects encoded batches (in any order) and saves each chunk once all of its batches are in."""

    def __init__(self, store: ChunkStore, batches: list[np.ndarray], owner: list[int]):
        self.store = store
        self.batches = batches
        self.owner = owner
        self.remaining = Counter(owner)
        self.parts: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {c: {} for c in self.remaining}

    def add(self, position: int, vectors: np.ndarray, ok: np.ndarray) -> None:
        """Record the result of batch ``position`` (an index into ``batches``); save its chunk when complete."""
        if len(vectors) != len(self.batches[position]) or len(ok) != len(vectors):
            raise RuntimeError(
                f"encoder returned {len(vectors)} rows for a batch of {len(self.batches[position])}"
            )
        c = self.owner[position]
        self.parts[c][position] = (vectors, ok)
        self.remaining[c] -= 1
        if self.remaining[c] == 0:
            done = self.parts.pop(c)
            parts = [done[p] for p in sorted(done)]
            self.store.save(c, np.concatenate([v for v, _ in parts]), np.concatenate([o for _, o in parts]))


@contextmanager
def pending_work(
    store: ChunkStore, chunks: list[np.ndarray], batch_size: int, desc: str
) -> Iterator[tuple[list[np.ndarray], ChunkAssembler, Any]]:
    """The batches still to encode, the assembler that saves their chunks, and a progress bar over all items
    that starts at the items already saved: what every engine needs before it encodes."""
    batches, owner = pending_batches(store, chunks, batch_size)
    total = sum(len(c) for c in chunks)
    assembler = ChunkAssembler(store, batches, owner)
    with progress_bar(
        total=total, initial=total - sum(map(len, batches)), unit="item", desc=desc, smoothing=0.1
    ) as bar:
        yield batches, assembler, bar


def run_chunks(
    store: ChunkStore,
    chunks: list[np.ndarray],
    batch_size: int,
    encode_batches: Callable[[list[np.ndarray]], Iterable[tuple[np.ndarray, np.ndarray]]],
    desc: str,
) -> None:
    """Encode every chunk not yet in ``store`` in this process; ``encode_batches(batches)`` yields
    ``(vectors, ok)`` per batch, in order."""
    with pending_work(store, chunks, batch_size, desc) as (batches, assembler, bar):
        results: Iterator = iter(encode_batches(batches))
        for position, batch in enumerate(batches):
            vectors, ok = next(results)
            assembler.add(position, vectors, ok)
            bar.update(len(batch))
