"""The id encoder of ``mmprep build`` on its own: CPU seconds a row at growing stream sizes, by step.

A whole 100M-review build needs a 24.7 GB dump and four minutes; the encoder alone needs neither. Here the
reviewer ids and ASINs of ``benchmarks/_generate.py``'s synthetic dump (its rows, in its file order: the
generator's own draws with the same seed) are built in memory, cut into batches of the build's
:data:`~mmprep.filter.collect.BATCH_BYTES` of ids, and fed to two :class:`~mmprep.filter.encode.Vocabulary`
(users on a worker thread, items on the calling one), as ``mmprep build``'s collector does. Per size: each
thread's CPU seconds, ns a row, and the CPU seconds of the encoder's steps: packing the ids into integer keys,
finding them in the hash table, inserting the new ones and growing the table (rehash). A flat ns a row is
what a build's reading stage needs to keep its rows/s from 10M to 100M reviews (BENCHMARKS.md,
"Out-of-core").

    python benchmarks/encoder.py --sizes 10000000 100000000 --json benchmarks/results/encoder.json
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, RESULTS, git_commit, machine_info
from _generate import Shape, _rows, item_ids, text_pools, user_ids
from prep import write_json

import mmprep.filter.encode as encode
from mmprep.filter.collect import BATCH_BYTES


def id_batches(n: int, batch_rows: int | None = None, seed: int = 0) -> list[tuple[pa.Array, pa.Array]]:
    """``(user ids, item ids)`` of the ``n`` reviews of the synthetic dump with ``seed``, in file order, in
    batches of ``batch_rows`` (default: as many rows as make :data:`BATCH_BYTES` of ids, the build's batch)."""
    rng = np.random.default_rng(seed)
    rows, n_users, n_items = _rows(n, Shape(), rng)
    text_pools(rng)  # drawn between the rows and the user ids in the generator: the same user ids as the dump
    users, items = user_ids(n_users, rng), item_ids(n_items)
    if batch_rows is None:
        sample = pa.array(rows.user[:1000]), pa.array(rows.item[:1000])
        per_row = (users.take(sample[0]).nbytes + items.take(sample[1]).nbytes) / len(sample[0])
        batch_rows = max(1, int(BATCH_BYTES // per_row))
    return [
        (
            users.take(pa.array(rows.user[lo : lo + batch_rows])),
            items.take(pa.array(rows.item[lo : lo + batch_rows])),
        )
        for lo in range(0, n, batch_rows)
    ]


class StepClock:
    """Thread CPU seconds and rows of the encoder's steps, summed over both threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.ids: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def wrap(self, name: str, fn: Callable, size: Callable[[tuple], int]) -> Callable:
        def timed(*args, **kwargs):
            start = time.thread_time()
            result = fn(*args, **kwargs)
            spent = time.thread_time() - start
            with self._lock:
                self.seconds[name] += spent
                self.ids[name] += size(args)
            return result

        return timed


STEPS = {  # step name: (Vocabulary method, the rows it works on from its arguments (self first))
    "pack": ("_pack", lambda a: len(a[1])),
    "find": ("_find", lambda a: len(a[1])),
    "insert": ("_insert", lambda a: len(a[2])),
    "rehash": ("_rehash", lambda a: a[0].size),
}


@contextmanager
def timed_steps(clock: StepClock) -> Iterator[None]:
    """Time the :class:`~mmprep.filter.encode.Vocabulary` methods named in :data:`STEPS`."""
    original = {method: getattr(encode.Vocabulary, method) for method, _ in STEPS.values()}
    for name, (method, size) in STEPS.items():
        setattr(encode.Vocabulary, method, clock.wrap(name, original[method], size))
    try:
        yield
    finally:
        for method, fn in original.items():
            setattr(encode.Vocabulary, method, fn)


def measure(n: int, batch_rows: int | None = None) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Encode ``n`` synthetic reviews as the build does; returns the row of the table and both code arrays."""
    batches = id_batches(n, batch_rows)
    users, items = encode.Vocabulary(), encode.Vocabulary()

    def run(vocabulary: encode.Vocabulary, column: int) -> tuple[float, np.ndarray]:
        start = time.thread_time()
        parts = [vocabulary.encode(batch[column]) for batch in batches]
        return time.thread_time() - start, np.concatenate(parts)

    clock = StepClock()
    with timed_steps(clock), ThreadPoolExecutor(1) as pool:
        wall = time.perf_counter()
        user_side = pool.submit(run, users, 0)
        item_cpu, item_codes = run(items, 1)
        user_cpu, user_codes = user_side.result()
        wall = time.perf_counter() - wall
    row = {
        "rows": n,
        "batches": len(batches),
        "batch_rows": len(batches[0][0]),
        "wall_s": round(wall, 2),
        "users_cpu_s": round(user_cpu, 2),
        "items_cpu_s": round(item_cpu, 2),
        "distinct_users": len(users),
        "distinct_items": len(items),
        "ns_per_row": round((user_cpu + item_cpu) / (2 * n) * 1e9, 1),
        "steps_cpu_s": {k: round(v, 2) for k, v in sorted(clock.seconds.items())},
        "steps_ids": dict(sorted(clock.ids.items())),
    }
    return row, user_codes, item_codes


def print_table(rows: list[dict[str, Any]]) -> None:
    steps = sorted({s for r in rows for s in r["steps_cpu_s"]})
    head = ["rows", "batches", "users CPU s", "items CPU s", "ns a row", *(f"{s} s" for s in steps)]
    print(" | ".join(head))
    for r in rows:
        cells = [f"{r['rows']:,}", str(r["batches"]), str(r["users_cpu_s"]), str(r["items_cpu_s"])]
        cells += [str(r["ns_per_row"]), *(str(r["steps_cpu_s"].get(s, 0.0)) for s in steps)]
        print(" | ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000_000, 100_000_000])
    parser.add_argument("--batch-rows", type=int, default=None, help="default: BATCH_BYTES of ids")
    parser.add_argument("--json", type=Path, default=RESULTS / "encoder.json")
    args = parser.parse_args(argv)
    rows = []
    for n in args.sizes:
        print(f"encoding {n:,} synthetic reviews ...", file=sys.stderr)
        rows.append(measure(n, args.batch_rows)[0])
    print_table(rows)
    doc = {
        "benchmark": "encoder",
        "commit": git_commit(REPO),
        "machine": machine_info(),
        "slice_rows": encode.SLICE_ROWS,
        "batch_bytes": BATCH_BYTES,
        "rows": rows,
    }
    write_json(args.json, doc)
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
