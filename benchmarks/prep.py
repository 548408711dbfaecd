"""Preprocessing benchmark: ``mmprep build`` against a straightforward pandas implementation of the same job.

For each size N a synthetic Amazon-2014 ``reviews_<Cat>_5.json.gz`` dump of N reviews is generated (and
cached) by ``benchmarks/_generate.py``. Then, each in a fresh subprocess so peak memory is measured per run:

- ``mmprep``: ``mmprep build --source amazon2014 --input interactions=DUMP --out TMP --item-text none
  --quiet`` (dedupe, iterative 5-core, first-appearance ids, per-user random 8:1:1 split, Parquet + manifest);
- ``pandas``: the way the reference notebooks do it: ``pd.read_json(lines=True, chunksize=...)`` of the gzip,
  ``drop_duplicates`` on (user, item) keeping the first, iterative 5-core with ``value_counts`` until stable,
  first-appearance id remap (``pd.factorize``), per-user random split (shuffle + ``groupby().cumcount()``, the
  LATTICE hold-out sizes), ``to_parquet``.

Both must end with the same user / item / interaction counts after the k-core; a mismatch is printed loudly
and recorded. Wall seconds, raw rows/s and peak RSS (``ru_maxrss`` of the child from ``os.wait4``) are
printed as a table and written as JSON together with a description of the machine.

    python benchmarks/prep.py --sizes 1000000 10000000 --json benchmarks/results/prep.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, RESULTS, machine_info
from _generate import DumpInfo, ensure_dump

DEFAULT_JSON = RESULTS / "prep.json"
K_CORE = 5
SEED = 123
READ_CHUNK_ROWS = 100_000
MIB = 1024 * 1024


@dataclass
class RunResult:
    """One timed run of one implementation on one dump."""

    impl: str
    rows: int
    wall_s: float
    rows_per_s: float
    peak_rss_mib: float
    counts: dict[str, int] = field(default_factory=dict)
    exit_code: int = 0
    error: str | None = None
    runs: list[dict[str, float]] = field(default_factory=list)
    temp_disk_mib: float = 0.0
    cpu_s: float = 0.0  # user + system CPU seconds of the child: less sensitive to a busy machine than wall
    loadavg_after: list[float] = field(default_factory=list)  # 1/5/15-minute load when the run ended


def package_versions() -> dict[str, str]:
    """Versions of the libraries the pandas path and ``mmprep build`` lean on."""
    import duckdb
    import pandas as pd
    import pyarrow as pa

    return {"pandas": pd.__version__, "pyarrow": pa.__version__, "duckdb": duckdb.__version__}


def _spill_bytes(folder: Path) -> int:
    """Bytes in the ``mmprep build`` spill folders (``.mmprep-spill-*``) directly inside ``folder``."""
    total = 0
    for spill in folder.glob(".mmprep-spill-*"):
        for dirpath, _, names in os.walk(spill):
            for name in names:
                try:
                    total += os.stat(os.path.join(dirpath, name)).st_size
                except OSError:  # removed while walking
                    pass
    return total


def run_measured(
    cmd: list[str],
    log_path: Path,
    spill_parent: Path | None = None,
    cwd: Path = REPO,
    env: dict[str, str] | None = None,
) -> tuple[int, float, float, float, float]:
    """Run ``cmd`` as a child (in ``cwd``, with ``env`` when given); return ``(exit code, wall seconds, peak
    RSS MiB, peak spill MiB, CPU seconds)``.

    ``os.wait4`` reports the child's own ``ru_maxrss`` (KiB on Linux), so every run is measured on its own,
    unlike ``RUSAGE_CHILDREN`` which is a maximum over all children ever waited for. With ``spill_parent``
    a thread samples the size of the build's spill folder there every 0.2 s (the temp disk it used).
    """
    peak = [0]
    done = threading.Event()

    def watch() -> None:
        while spill_parent is not None and not done.wait(0.2):
            peak[0] = max(peak[0], _spill_bytes(spill_parent))

    watcher = threading.Thread(target=watch, daemon=True)
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    done.set()
    watcher.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, usage.ru_maxrss / 1024, peak[0] / MIB, usage.ru_utime + usage.ru_stime


def mmprep_command(dump: Path, out: Path, memory_limit: str | None = None) -> list[str]:
    """The ``mmprep build`` invocation benchmarked (the console script next to this interpreter)."""
    exe = Path(sys.executable).with_name("mmprep")
    head = [str(exe)] if exe.is_file() else [sys.executable, "-m", "mmprep.cli"]
    return [
        *head,
        "build",
        "--source",
        "amazon2014",
        "--input",
        f"interactions={dump}",
        "--out",
        str(out),
        "--item-text",
        "none",
        "--quiet",
        *(["--memory-limit", memory_limit] if memory_limit else []),
    ]


def mmprep_counts(out: Path) -> dict[str, int]:
    """Counts from the manifest ``mmprep build`` wrote."""
    manifest = json.loads((out / "manifest.json").read_text())
    c = manifest["counts"]
    split = manifest["splits"]["warm"]["counts"]
    return {
        "after_dedupe": c["after_dedupe"],
        "users": c["users"],
        "items": c["items"],
        "interactions": c["interactions"],
        **{f"split_{k}": v for k, v in split.items()},
    }


def pandas_pipeline(dump: Path, out: Path) -> dict[str, int]:
    """The naive pandas path: chunked ``read_json``, dedupe, iterative 5-core, remap, random split, Parquet.

    Runs inside the worker subprocess; returns the counts it ended with.
    """
    import numpy as np
    import pandas as pd

    cols = ["reviewerID", "asin", "overall", "unixReviewTime"]
    parts = []
    # dtype=False: pandas' default dtype inference turns a chunk of all-digit ASINs (ISBNs such as
    # "0000007919") into integers, dropping the leading zeros and mixing types across chunks.
    reader = pd.read_json(
        dump, lines=True, chunksize=READ_CHUNK_ROWS, compression="gzip", dtype=False, convert_dates=False
    )
    with reader:
        for chunk in reader:
            parts.append(chunk[cols])
    df = pd.concat(parts, ignore_index=True)
    del parts
    df.columns = ["user_id", "item_id", "rating", "timestamp"]
    df = df.dropna(subset=["user_id", "item_id"])
    df = df.drop_duplicates(subset=["user_id", "item_id"], keep="first")
    after_dedupe = len(df)

    while True:
        user_deg = df["user_id"].map(df["user_id"].value_counts())
        item_deg = df["item_id"].map(df["item_id"].value_counts())
        bad = (user_deg < K_CORE) | (item_deg < K_CORE)
        if not bad.any():
            break
        df = df[~bad]
    df = df.reset_index(drop=True)

    df["user_idx"], user_ids = pd.factorize(df["user_id"])
    df["item_idx"], item_ids = pd.factorize(df["item_id"])

    rng = np.random.default_rng(SEED)
    shuffled = df.iloc[rng.permutation(len(df))]
    rank = shuffled.groupby("user_idx", sort=False).cumcount()
    n = shuffled.groupby("user_idx", sort=False)["item_idx"].transform("size")
    held = np.where(n < 10, 2, (0.2 * n).astype(int))
    test = held // 2
    label = np.where(rank < test, 2, np.where(rank < held, 1, 0))
    shuffled = shuffled.assign(label=label)

    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"user_idx": np.arange(len(user_ids)), "user_id": user_ids}).to_parquet(
        out / "users.parquet", index=False
    )
    pd.DataFrame({"item_idx": np.arange(len(item_ids)), "item_id": item_ids}).to_parquet(
        out / "items.parquet", index=False
    )
    keep = ["user_idx", "item_idx", "rating", "timestamp"]
    df[keep].to_parquet(out / "interactions.parquet", index=False)
    splits = {}
    for code, name in enumerate(("train", "val", "test")):
        part = shuffled[shuffled["label"] == code].sort_index()[keep]
        part.to_parquet(out / f"{name}.parquet", index=False)
        splits[f"split_{name}"] = len(part)
    return {
        "after_dedupe": after_dedupe,
        "users": len(user_ids),
        "items": len(item_ids),
        "interactions": len(df),
        **splits,
    }


def run_once(impl: str, dump: DumpInfo, scratch: Path, memory_limit: str | None = None) -> RunResult:
    """Time one implementation on one dump in a fresh subprocess and collect its counts.

    ``mmprep-limited`` is ``mmprep build --memory-limit memory_limit``; ``mmprep`` is the default build."""
    out = scratch / f"{impl}-out"
    shutil.rmtree(out, ignore_errors=True)
    counts_file = scratch / f"{impl}-counts.json"
    counts_file.unlink(missing_ok=True)
    if impl.startswith("mmprep"):
        cmd = mmprep_command(dump.path, out, memory_limit if impl == "mmprep-limited" else None)
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--pandas-worker", str(dump.path), str(out)]
        cmd += [str(counts_file)]
    log = scratch / f"{impl}.log"
    code, wall, rss, spilled, cpu = run_measured(cmd, log, scratch if impl.startswith("mmprep") else None)
    result = RunResult(
        impl, dump.rows, round(wall, 2), round(dump.rows / wall), round(rss, 1), exit_code=code
    )
    result.temp_disk_mib = round(spilled, 1)
    result.cpu_s = round(cpu, 1)
    result.loadavg_after = [round(v, 2) for v in os.getloadavg()]
    if code != 0:
        text = log.read_text(errors="replace") if log.is_file() else ""
        tail = text.strip().splitlines()[-1:] or ["(no output)"]
        result.error = f"exit {code}: {tail[0]}"
        return result
    result.counts = mmprep_counts(out) if impl.startswith("mmprep") else json.loads(counts_file.read_text())
    shutil.rmtree(out, ignore_errors=True)
    return result


def summarise(runs: list[RunResult]) -> RunResult:
    """One result from repeated runs: median wall time, maximum peak RSS, every run kept in ``runs``."""
    failed = [r for r in runs if r.error]
    if failed:
        return failed[0]
    wall = statistics.median(r.wall_s for r in runs)
    first = runs[0]
    return RunResult(
        first.impl,
        first.rows,
        round(wall, 2),
        round(first.rows / wall),
        max(r.peak_rss_mib for r in runs),
        counts=first.counts,
        runs=[
            {
                "wall_s": r.wall_s,
                "peak_rss_mib": r.peak_rss_mib,
                "cpu_s": r.cpu_s,
                "loadavg_after": r.loadavg_after,
            }
            for r in runs
        ],
        temp_disk_mib=max(r.temp_disk_mib for r in runs),
        cpu_s=statistics.median(r.cpu_s for r in runs),
        loadavg_after=runs[-1].loadavg_after,
    )


def compare_counts(a: RunResult, b: RunResult) -> list[str]:
    """Differences in after-k-core counts between two successful runs (empty when they agree)."""
    keys = ["after_dedupe", "users", "items", "interactions"]
    if a.impl.startswith("mmprep") and b.impl.startswith("mmprep"):  # two builds: the splits must agree too
        keys += sorted(k for k in a.counts if k.startswith("split_"))
    return [
        f"{k}: {a.impl}={a.counts.get(k)} {b.impl}={b.counts.get(k)}"
        for k in keys
        if a.counts.get(k) != b.counts.get(k)
    ]


def print_table(rows: list[dict[str, Any]]) -> None:
    """The result table on stdout, columns right-aligned."""
    headers = [
        "rows",
        "impl",
        "wall s",
        "rows/s",
        "peak RSS MiB",
        "RSS / dump",
        "speedup",
        "temp MiB",
        "users",
        "items",
        "inter.",
    ]
    cells = []
    for r in rows:
        c = r["counts"]
        cells.append(
            [
                f"{r['rows']:,}",
                r["impl"],
                f"{r['wall_s']:.1f}" if not r["error"] else "failed",
                f"{r['rows_per_s']:,}",
                f"{r['peak_rss_mib']:,.0f}",
                f"{r['rss_over_uncompressed']:.2f}",
                f"{r['speedup']:.1f}x" if r.get("speedup") else "",
                f"{r['temp_disk_mib']:,.0f}",
                f"{c.get('users', 0):,}",
                f"{c.get('items', 0):,}",
                f"{c.get('interactions', 0):,}",
            ]
        )
    print("mmprep build (Amazon-2014 synthetic dump, 5-core, random split)")
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def benchmark(
    sizes: list[int],
    work_dir: Path,
    skip_pandas: bool,
    seed: int,
    repeat: int = 1,
    json_path: Path | None = None,
    memory_limit: str | None = None,
) -> dict[str, Any]:
    """Generate (or reuse) the dumps and run every implementation on each; return the JSON document.

    With ``memory_limit`` the pair compared is ``mmprep build --memory-limit`` against the default build."""
    rows: list[dict[str, Any]] = []
    mismatches: list[str] = []
    if memory_limit:
        impls = ["mmprep-limited"] if skip_pandas else ["mmprep-limited", "mmprep"]
    else:
        impls = ["mmprep"] if skip_pandas else ["mmprep", "pandas"]
    dumps: list[dict[str, Any]] = []
    doc = {
        "benchmark": "prep",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(**package_versions()),
        "params": {
            "k_user": K_CORE,
            "k_item": K_CORE,
            "split": "random 8:1:1",
            "seed": seed,
            "repeat": repeat,
            "memory_limit": memory_limit,
        },
        "dumps": dumps,
        "results": rows,
        "count_mismatches": mismatches,
    }
    for n in sizes:
        print(f"dump of {n:,} reviews ...", file=sys.stderr, flush=True)
        dump = ensure_dump(work_dir, n, seed)
        dumps.append(
            {
                "rows": dump.rows,
                "path": str(dump.path),
                "uncompressed_mib": round(dump.uncompressed_bytes / MIB, 1),
                "compressed_mib": round(dump.compressed_bytes / MIB, 1),
                "generate_s": round(dump.seconds, 1),
                "cached": dump.cached,
            }
        )
        runs: dict[str, list[RunResult]] = {impl: [] for impl in impls}
        with tempfile.TemporaryDirectory(prefix="prep-bench-", dir=work_dir) as tmp:
            for attempt in range(repeat):
                for impl in impls:
                    print(f"  {impl} on {n:,} rows (run {attempt + 1}) ...", file=sys.stderr, flush=True)
                    res = run_once(impl, dump, Path(tmp), memory_limit)
                    runs[impl].append(res)
                    status = res.error or f"{res.wall_s:.1f} s, peak {res.peak_rss_mib:,.0f} MiB"
                    print(f"  {impl}: {status}", file=sys.stderr, flush=True)
        by_impl = {impl: summarise(rs) for impl, rs in runs.items()}
        ok = {k: v for k, v in by_impl.items() if v.error is None}
        if len(ok) == 2:
            diff = compare_counts(*ok.values())
            if diff:
                msg = f"COUNT MISMATCH at {n:,} rows: " + "; ".join(diff)
                mismatches.append(msg)
                print("!" * 80 + f"\n{msg}\n" + "!" * 80, file=sys.stderr, flush=True)
        for impl, res in by_impl.items():
            row = asdict(res)
            row["rss_over_uncompressed"] = round(res.peak_rss_mib * MIB / dump.uncompressed_bytes, 3)
            if impl.startswith("mmprep") and "pandas" in ok and res.error is None:
                row["speedup"] = round(ok["pandas"].wall_s / res.wall_s, 2)
            rows.append(row)
        if json_path is not None:
            write_json(json_path, doc)
    return doc


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write the results (after every size, so an interrupted run keeps what it measured)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000], help="Dump sizes (reviews).")
    parser.add_argument(
        "--work-dir", type=Path, default=Path("/tmp/modalrec-bench"), help="Cache of the generated dumps."
    )
    parser.add_argument("--json", type=Path, help=f"Where to write the results (default {DEFAULT_JSON}).")
    parser.add_argument("--skip-pandas", action="store_true", help="Run only mmprep.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the synthetic dumps.")
    parser.add_argument(
        "--repeat", type=int, default=1, help="Runs per implementation (interleaved); median wall, max RSS."
    )
    parser.add_argument(
        "--memory-limit",
        metavar="SIZE",
        help="Benchmark mmprep build --memory-limit SIZE against the default build (instead of pandas); "
        "records peak temp disk too. Default JSON: benchmarks/results/prep_memory_limit.json.",
    )
    parser.add_argument("--pandas-worker", nargs=3, metavar=("DUMP", "OUT", "COUNTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pandas_worker:
        dump, out, counts = (Path(p) for p in args.pandas_worker)
        counts.write_text(json.dumps(pandas_pipeline(dump, out)))
        return 0
    args.work_dir.mkdir(parents=True, exist_ok=True)
    args.json = args.json or (RESULTS / "prep_memory_limit.json" if args.memory_limit else DEFAULT_JSON)
    doc = benchmark(
        args.sizes,
        args.work_dir,
        args.skip_pandas,
        args.seed,
        max(1, args.repeat),
        args.json,
        args.memory_limit,
    )
    print_table(doc["results"])
    for msg in doc["count_mismatches"]:
        print(msg)
    print(f"wrote {args.json}")
    return 1 if doc["count_mismatches"] or any(r["error"] for r in doc["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
