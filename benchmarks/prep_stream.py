"""Peak memory of ``mmprep build`` after parsing, at dump sizes this machine cannot generate and parse in time.

A real 100M-review run needs the ~25 GB gzip dump of ``benchmarks/_generate.py`` (``benchmarks/prep.py
--sizes 100000000``) and about 20 CPU-minutes to parse it. This benchmark feeds the build the same kind of
rows without JSON: a source registered in the worker process yields blocks of 65,536 interactions (Arrow
tables, like the parsed blocks of the gzip fast path) with users and items drawn from the generator's Pareto
activity weights (same shape, same pools: N/3 users, N/10 items; rows are not grouped by item), ids shaped like
the dump's (``user_ids_at`` / ``item_ids_at``), random ratings and days. Everything after parsing runs as in
``mmprep build --memory-limit``: batch encoding to int32 codes, rating/timestamp in the spill folder,
dedupe, 5-core, random 8:1:1 split, Parquet. The parsing itself is per block (DuckDB holds one 16 MiB block at
a time) and so does not grow with the dump.

Peak RSS is the worker's ``ru_maxrss``; ``baseline_rss_mib`` is its RSS before the build started (imports and
the activity weights: 8 bytes per user and per item), part of the peak.

    python benchmarks/prep_stream.py --sizes 10000000 100000000 --json benchmarks/results/prep_stream.json
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine_info
from _generate import FIRST_DAY, LAST_DAY, Shape, item_ids_at, user_ids_at
from prep import package_versions, run_measured, write_json

BLOCK_ROWS = 1 << 16
DEFAULT_JSON = RESULTS / "prep_stream.json"


def worker(n: int, out: Path, memory_limit: str, counts_file: Path, seed: int) -> None:
    """In the child: register the block source and run the build; write counts and the baseline RSS."""
    import numpy as np
    import pyarrow as pa

    from mmprep.build import BuildParams, build_dataset
    from mmprep.sources.base import Source, SourceFiles, StreamEvent, register
    from mmprep.sources.spill import parse_memory_limit

    shape = Shape()
    rng = np.random.default_rng(seed)

    def cdf(pool: int, alpha: float) -> np.ndarray:
        c = np.cumsum(rng.pareto(alpha, pool) + 1.0)
        return c / c[-1]

    n_users, n_items = max(10, int(n / shape.mean_user_degree)), max(10, int(n / shape.mean_item_degree))
    user_cdf, item_cdf = cdf(n_users, shape.user_pareto_shape), cdf(n_items, shape.item_pareto_shape)

    @register
    class BlockSource(Source):
        name = "synthetic-blocks"
        description = "synthetic parsed blocks (benchmark only)"
        roles = {"interactions": "any file (only hashed)"}

        def interactions(self) -> pa.Table:
            return pa.concat_tables(t for t in self.interaction_stream() if isinstance(t, pa.Table))

        def interaction_stream(self):
            yield StreamEvent.FILE_START
            for lo in range(0, n, BLOCK_ROWS):
                k = min(BLOCK_ROWS, n - lo)
                u = np.minimum(np.searchsorted(user_cdf, rng.random(k), side="right"), n_users - 1)
                i = np.minimum(np.searchsorted(item_cdf, rng.random(k), side="right"), n_items - 1)
                days = rng.integers(FIRST_DAY, LAST_DAY + 1, size=k)
                yield pa.table(
                    {
                        "user_id": user_ids_at(u),
                        "item_id": item_ids_at(i),
                        "rating": rng.integers(1, 6, size=k).astype(np.float32),
                        "timestamp": days * 86400,
                    }
                )

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    manifest = build_dataset(
        "synthetic-blocks",
        "synthetic-blocks",
        SourceFiles({"interactions": [Path(__file__).resolve()]}),
        BuildParams(item_text="none"),
        out,
        quiet=True,
        memory_limit=parse_memory_limit(memory_limit),
    )
    counts = {
        k: manifest["counts"][k] for k in ("raw_records", "after_dedupe", "users", "items", "interactions")
    }
    counts_file.write_text(json.dumps({"counts": counts, "baseline_rss_mib": round(baseline, 1)}))


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000_000])
    parser.add_argument("--memory-limit", default="1GB")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--append", action="store_true", help="Keep the results already in --json.")
    parser.add_argument("--worker", nargs=3, metavar=("N", "OUT", "COUNTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(int(args.worker[0]), Path(args.worker[1]), args.memory_limit, Path(args.worker[2]), args.seed)
        return 0
    doc: dict[str, Any] = {
        "benchmark": "prep_stream",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(**package_versions()),
        "params": {"k_user": 5, "k_item": 5, "split": "random 8:1:1", "memory_limit": args.memory_limit},
        "results": [],
    }
    if args.append and args.json.is_file():
        doc["results"] = json.loads(args.json.read_text())["results"]
    for n in args.sizes:
        scratch = Path(tempfile.mkdtemp(prefix="prep-stream-", dir=args.work_dir))
        try:
            out, counts_file = scratch / "out" / "ds", scratch / "counts.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-limit", args.memory_limit]
            cmd += ["--seed", str(args.seed), "--worker", str(n), str(out), str(counts_file)]
            print(f"{n:,} rows ...", file=sys.stderr, flush=True)
            code, wall, rss, spilled, cpu = run_measured(cmd, scratch / "worker.log", out.parent)
            row: dict[str, Any] = {
                "rows": n,
                "exit_code": code,
                "wall_s": round(wall, 1),
                "rows_per_s": round(n / wall),
                "cpu_s": round(cpu, 1),
                "rows_per_cpu_s": round(n / cpu) if cpu else None,
                "peak_rss_mib": round(rss, 1),
                "temp_disk_mib": round(spilled, 1),
                "loadavg_after": [round(v, 2) for v in __import__("os").getloadavg()],
            }
            if code == 0:
                row.update(json.loads(counts_file.read_text()))
            else:
                log = (scratch / "worker.log").read_text(errors="replace").strip().splitlines()
                row["error"] = log[-1] if log else f"exit {code}"
            doc["results"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            write_json(args.json, doc)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"wrote {args.json}")
    return 0 if all(r["exit_code"] == 0 for r in doc["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
