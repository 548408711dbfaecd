"""Interleaved A/B of ``mmprep build``: an earlier commit's code against this checkout's, on the same dump.

Whole builds of a large dump vary by 10% or more from run to run on a shared VM, more than most changes to
one stage are worth, and a machine that speeds up or slows down over a session favours whichever side ran
first. So the two sides alternate (base, head, base, head, ...) and every run reports its own stage times:

- ``base``: ``git archive BASE mmprep mmformat`` extracted into a scratch folder and put first on
  ``PYTHONPATH`` (the runs start in a scratch folder, so this checkout's packages cannot shadow it);
- ``head``: this checkout's working tree.

Both run ``mmprep build --source amazon2014 --input interactions=DUMP --item-text none [--memory-limit SIZE]``
(the command of ``benchmarks/prep.py``, with its stage lines) on ``benchmarks/_generate.py``'s synthetic dump.
Per side: wall seconds, CPU seconds and peak RSS of every run, the seconds of every stage the build reports
(``✓ reading ... (12.3s)``) and their medians; the after-k-core counts must agree. Prints a table and writes
JSON.

    python benchmarks/prep_ab.py --base 5d43530 --size 100000000 --repeat 3 --memory-limit 1GB \\
        --work-dir /work/big --json benchmarks/results/prep_ab_100m.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, RESULTS, git_commit, machine_info
from _generate import ensure_dump
from prep import mmprep_counts, package_versions, run_measured, write_json

PACKAGES = ("mmprep", "mmformat")
STAGE_LINE = re.compile(r"^✓ (?P<title>.+) \((?P<seconds>[0-9.]+)s\)$")
ENTRY = "from mmprep.cli import run; run()"  # the console script, allocator settings included


def extract_base(rev: str, dest: Path) -> str:
    """Extract ``rev``'s packages into ``dest``; returns the full commit hash (one line error if unknown)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        blob = subprocess.run(
            ["git", "archive", commit, *PACKAGES], cwd=REPO, capture_output=True, check=True
        ).stdout
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"prep_ab: --base {rev}: {(e.stderr or b'').strip()!s}") from None
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    return commit


def stage_name(title: str) -> str:
    """A stage title without its run-specific parts: ``dedupe + k-core (100 records)`` -> ``dedupe + k-core``,
    ``writing /tmp/x`` -> ``writing``."""
    title = title.split(" (")[0]
    return "writing" if title.startswith("writing ") else title


def stages(log: str) -> dict[str, float]:
    """Seconds per stage from a build's stderr (its ``✓ title (Xs)`` lines)."""
    found = {}
    for line in log.splitlines():
        m = STAGE_LINE.match(line.strip())
        if m:
            found[stage_name(m["title"])] = float(m["seconds"])
    return found


def build_command(dump: Path, out: Path, memory_limit: str | None) -> list[str]:
    """``mmprep build`` through the console script's entry point of whichever packages come first on the path."""
    cmd = [sys.executable, "-c", ENTRY, "build", "--source", "amazon2014", "--input", f"interactions={dump}"]
    cmd += ["--out", str(out), "--item-text", "none"]
    return cmd + (["--memory-limit", memory_limit] if memory_limit else [])


def run_side(side: str, src: Path, dump: Path, scratch: Path, memory_limit: str | None) -> dict[str, Any]:
    """One build of ``side`` (its packages at ``src``), measured; the output is removed after its counts."""
    out = scratch / f"{side}-out"
    shutil.rmtree(out, ignore_errors=True)
    log = scratch / f"{side}.log"
    path = [str(src), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    code, wall, rss, _, cpu = run_measured(build_command(dump, out, memory_limit), log, cwd=scratch, env=env)
    text = log.read_text(errors="replace")
    run: dict[str, Any] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 1), "peak_rss_mib": round(rss, 1)}
    run["stages_s"] = stages(text)
    run["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    if code != 0:
        run["error"] = f"exit {code}: {(text.strip().splitlines() or ['(no output)'])[-1]}"
    else:
        run["counts"] = mmprep_counts(out)
    shutil.rmtree(out, ignore_errors=True)
    return run


def summary(runs: list[dict[str, Any]], rows: int) -> dict[str, Any]:
    """Medians of wall, CPU and each stage over a side's runs, the largest peak RSS, rows/s at the median."""
    wall = statistics.median(r["wall_s"] for r in runs)
    names = list(dict.fromkeys(k for r in runs for k in r["stages_s"]))
    return {
        "wall_s": round(wall, 2),
        "rows_per_s": round(rows / wall),
        "cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 1),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "stages_s": {n: round(statistics.median(r["stages_s"].get(n, 0.0) for r in runs), 2) for n in names},
    }


def benchmark(base: str, size: int, work_dir: Path, seed: int, repeat: int, memory_limit: str | None) -> dict:
    """Alternate base and head builds ``repeat`` times each on the dump of ``size`` reviews."""
    dump = ensure_dump(work_dir, size, seed)
    with tempfile.TemporaryDirectory(prefix="prep-ab-", dir=work_dir) as tmp:
        scratch = Path(tmp)
        (scratch / "base-src").mkdir()
        commit = extract_base(base, scratch / "base-src")
        sides = {"base": scratch / "base-src", "head": REPO}
        runs: dict[str, list[dict[str, Any]]] = {"base": [], "head": []}
        for i in range(repeat):
            for side, src in sides.items():
                print(f"  {side} run {i + 1}/{repeat} on {dump.rows:,} rows ...", file=sys.stderr, flush=True)
                runs[side].append(run_side(side, src, dump.path, scratch, memory_limit))
                print(f"  {side}: {runs[side][-1]['wall_s']} s", file=sys.stderr, flush=True)
    errors = [f"{s}: {r['error']}" for s, rs in runs.items() for r in rs if "error" in r]
    counts = {json.dumps(r["counts"], sort_keys=True) for rs in runs.values() for r in rs if "counts" in r}
    doc: dict[str, Any] = {
        "benchmark": "prep_ab",
        "command": "mmprep build --source amazon2014 --item-text none"
        + (f" --memory-limit {memory_limit}" if memory_limit else ""),
        "rows": dump.rows,
        "dump_bytes": dump.compressed_bytes,
        "base": {"rev": base, "commit": commit},
        "head": {"commit": git_commit(REPO), "dirty": _dirty()},
        "machine": machine_info(**package_versions()),
        "runs": runs,
        "errors": errors,
        "counts_agree": len(counts) == 1 and not errors,
    }
    if not errors:
        doc["summary"] = {side: summary(rs, dump.rows) for side, rs in runs.items()}
        doc["head_over_base_wall"] = round(
            doc["summary"]["head"]["wall_s"] / doc["summary"]["base"]["wall_s"], 3
        )
    return doc


def _dirty() -> bool:
    """Whether the head side's packages differ from the checkout's HEAD commit."""
    diff = subprocess.run(
        ["git", "status", "--porcelain", *PACKAGES], cwd=REPO, capture_output=True, text=True
    )
    return bool(diff.stdout.strip())


def print_table(doc: dict[str, Any]) -> None:
    """Per side: median wall, rows/s, CPU, peak RSS and each stage's median seconds."""
    if "summary" not in doc:
        print("\n".join(doc["errors"]))
        return
    names = list(dict.fromkeys(n for s in doc["summary"].values() for n in s["stages_s"]))
    headers = ["side", "wall s", "rows/s", "CPU s", "peak RSS MiB", *names]
    lines = [headers]
    for side, s in doc["summary"].items():
        lines.append(
            [
                side,
                f"{s['wall_s']:.1f}",
                f"{s['rows_per_s']:,}",
                f"{s['cpu_s']:.1f}",
                f"{s['peak_rss_mib']:,.0f}",
            ]
            + [f"{s['stages_s'].get(n, 0.0):.1f}" for n in names]
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(headers))]
    print(
        f"mmprep build A/B, {doc['rows']:,} rows, medians of {len(doc['runs']['head'])} interleaved runs each"
    )
    for row in lines:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    print(f"head / base wall: {doc['head_over_base_wall']}; counts agree: {doc['counts_agree']}")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="The commit (or any git revision) to compare against.")
    parser.add_argument("--size", type=int, default=10_000_000, help="Dump size (reviews).")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/modalrec-bench"), help="Dump cache.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the synthetic dump.")
    parser.add_argument("--repeat", type=int, default=3, help="Runs per side, interleaved.")
    parser.add_argument("--memory-limit", metavar="SIZE", help="Pass --memory-limit SIZE to both builds.")
    parser.add_argument(
        "--json", type=Path, default=RESULTS / "prep_ab.json", help="Where to write the results."
    )
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    doc = benchmark(args.base, args.size, args.work_dir, args.seed, max(1, args.repeat), args.memory_limit)
    write_json(args.json, doc)
    print_table(doc)
    print(f"wrote {args.json}")
    return 0 if doc["counts_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
