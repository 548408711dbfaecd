"""Does ``mmprep build`` keep its rows/s on a 10x larger dump? Small and large builds alternated, on one VM.

The out-of-core target compares two throughputs: the large (100M-review) build's rows/s against the small
(10M) build's. Measured as two separate benchmarks, run one after the other, the ratio carries the machine's
drift over the minutes between them (on the shared 2-core VM the same 100M build took 155-202 s within an
hour). Here the sizes alternate (small, large, small, large, ...), so every round's two builds run minutes
apart, and the ratio is reported per round as well as from the medians:

- throughput ratio = (large rows / large wall) / (small rows / small wall): >= 1 when the large build keeps
  the small one's rows/s;
- CPU ratio per row = (large CPU s / large rows) / (small CPU s / small rows): <= 1 when no work grows faster
  than the dump (less sensitive to the machine's load than wall time);
- each stage's seconds a raw row at the large size over the same at the small size (stage lines of the build).

Both run the command of ``benchmarks/prep.py`` (``mmprep build --source amazon2014 --item-text none
[--memory-limit SIZE]``, with its stage lines) of this checkout on ``benchmarks/_generate.py``'s dumps; the
counts of each size must agree across its runs. Prints a table and writes JSON.

    python benchmarks/prep_scaling.py --sizes 10000000 100000000 --repeat 3 --memory-limit 1GB \\
        --large-work-dir /work/big --json benchmarks/results/prep_scaling.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, RESULTS, git_commit, machine_info
from _generate import ensure_dump
from prep import package_versions, write_json
from prep_ab import run_side, summary


def per_row(seconds: float, rows: int) -> float:
    """Seconds a raw row."""
    return seconds / rows


def round_ratios(small: dict[str, Any], large: dict[str, Any], small_rows: int, large_rows: int) -> dict:
    """The throughput and CPU ratios of one small and one large build (module docstring)."""
    return {
        "throughput": round(per_row(small["wall_s"], small_rows) / per_row(large["wall_s"], large_rows), 4),
        "cpu_per_row": round(per_row(large["cpu_s"], large_rows) / per_row(small["cpu_s"], small_rows), 4),
    }


def stage_ratios(small: dict[str, float], large: dict[str, float], small_rows: int, large_rows: int) -> dict:
    """Each stage's seconds a row at the large size over the small size's (stages both report, non-zero)."""
    return {
        name: round(per_row(large[name], large_rows) / per_row(small[name], small_rows), 3)
        for name in small
        if name in large and small[name] > 0
    }


def analyse(runs: dict[str, list[dict[str, Any]]], small_rows: int, large_rows: int) -> dict[str, Any]:
    """Per-round ratios, their median / min / max, the ratios of the medians, and the stage ratios."""
    rounds = [
        round_ratios(s, big, small_rows, large_rows)
        for s, big in zip(runs["small"], runs["large"], strict=True)
    ]
    sums = {"small": summary(runs["small"], small_rows), "large": summary(runs["large"], large_rows)}
    of_medians = round_ratios(sums["small"], sums["large"], small_rows, large_rows)
    out: dict[str, Any] = {"summary": sums, "rounds": rounds, "ratio_of_medians": of_medians}
    for key in ("throughput", "cpu_per_row"):
        values = [r[key] for r in rounds]
        out[key] = {"median": round(statistics.median(values), 4), "min": min(values), "max": max(values)}
    out["stage_ratios"] = stage_ratios(
        sums["small"]["stages_s"], sums["large"]["stages_s"], small_rows, large_rows
    )
    return out


def benchmark(
    sizes: tuple[int, int],
    work_dirs: tuple[Path, Path],
    seed: int,
    repeat: int,
    memory_limit: str | None,
) -> dict[str, Any]:
    """Alternate small and large builds ``repeat`` times; the JSON document."""
    dumps = {
        name: ensure_dump(d, n, seed) for name, n, d in zip(("small", "large"), sizes, work_dirs, strict=True)
    }
    runs: dict[str, list[dict[str, Any]]] = {"small": [], "large": []}
    for i in range(repeat):
        for name, dump in dumps.items():
            print(f"  {name} run {i + 1}/{repeat} on {dump.rows:,} rows ...", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="prep-scaling-", dir=dump.path.parent) as tmp:
                runs[name].append(run_side(name, REPO, dump.path, Path(tmp), memory_limit))
            print(f"  {name}: {runs[name][-1]['wall_s']} s", file=sys.stderr, flush=True)
    errors = [f"{name}: {r['error']}" for name, rs in runs.items() for r in rs if "error" in r]
    mismatched = [
        name
        for name, rs in runs.items()
        if len({json.dumps(r["counts"], sort_keys=True) for r in rs if "counts" in r}) > 1
    ]
    doc: dict[str, Any] = {
        "benchmark": "prep_scaling",
        "command": "mmprep build --source amazon2014 --item-text none"
        + (f" --memory-limit {memory_limit}" if memory_limit else ""),
        "commit": git_commit(REPO),
        "rows": {name: dump.rows for name, dump in dumps.items()},
        "dump_bytes": {name: dump.compressed_bytes for name, dump in dumps.items()},
        "machine": machine_info(**package_versions()),
        "runs": runs,
        "errors": errors + [f"{name}: counts differ between runs" for name in mismatched],
    }
    if not doc["errors"]:
        doc.update(analyse(runs, dumps["small"].rows, dumps["large"].rows))
    return doc


def print_table(doc: dict[str, Any]) -> None:
    """Per size the medians, then the ratios per round and over all rounds."""
    if doc["errors"]:
        print("\n".join(doc["errors"]))
        return
    print(f"mmprep build at two sizes, {len(doc['rounds'])} alternating rounds ({doc['command']})")
    lines = [["size", "rows", "wall s", "rows/s", "CPU s", "peak RSS MiB"]]
    for name, s in doc["summary"].items():
        lines.append(
            [
                name,
                f"{doc['rows'][name]:,}",
                f"{s['wall_s']:.2f}",
                f"{s['rows_per_s']:,}",
                f"{s['cpu_s']:.1f}",
                f"{s['peak_rss_mib']:,.0f}",
            ]
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    for row in lines:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    per_round = ", ".join(f"{r['throughput']:.3f}" for r in doc["rounds"])
    t, c = doc["throughput"], doc["cpu_per_row"]
    print(f"throughput large / small per round: {per_round}; median {t['median']:.3f}")
    print(f"CPU a row large / small: median {c['median']:.3f} (min {c['min']:.3f}, max {c['max']:.3f})")
    print(
        "stage seconds a row, large / small: " + ", ".join(f"{k} {v}" for k, v in doc["stage_ratios"].items())
    )


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs=2,
        default=[10_000_000, 100_000_000],
        metavar=("SMALL", "LARGE"),
        help="The two dump sizes (reviews) [10000000 100000000].",
    )
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/modalrec-bench"), help="Dump cache.")
    parser.add_argument("--large-work-dir", type=Path, help="Dump cache of the large dump [--work-dir].")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the synthetic dumps.")
    parser.add_argument("--repeat", type=int, default=3, help="Rounds (one small and one large build each).")
    parser.add_argument("--memory-limit", metavar="SIZE", help="Pass --memory-limit SIZE to every build.")
    parser.add_argument(
        "--json", type=Path, default=RESULTS / "prep_scaling.json", help="Where to write the results."
    )
    args = parser.parse_args(argv)
    small, large = args.sizes
    if not 0 < small < large:
        parser.error("--sizes: SMALL must be positive and below LARGE")
    dirs = (args.work_dir, args.large_work_dir or args.work_dir)
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    doc = benchmark((small, large), dirs, args.seed, max(1, args.repeat), args.memory_limit)
    write_json(args.json, doc)
    print_table(doc)
    print(f"wrote {args.json}")
    return 0 if not doc["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
