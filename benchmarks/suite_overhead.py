"""Suite overhead per trial: the wall time a trial spends outside training and validation.

Reads a finished (or partly finished) suite directory: for every done trial, ``trial.json`` ``seconds`` is the
trial's wall time in the executor (dataset load, model build, training, validation, the one test evaluation,
the per-user files, moving the run into place); ``metrics.csv`` has each epoch's training and validation
seconds. Overhead = wall - (sum of train_seconds + sum of eval_seconds), reported in seconds and as a share of
the trial, per model. The target (issue 14): <= 5% of a LightGCN TikTok trial.

    python benchmarks/suite_overhead.py benchmarks/results/suite-tiktok-cpu
    python benchmarks/suite_overhead.py SUITE_DIR --json benchmarks/results/suite-overhead.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine_info


def trial_costs(suite_dir: Path) -> list[dict]:
    """One row per done trial: model, seed, wall seconds, train + validation seconds, overhead."""
    rows = []
    for info_path in sorted((suite_dir / "trials").glob("*/trial.json")):
        info = json.loads(info_path.read_text(encoding="utf-8"))
        metrics = info_path.parent / "metrics.csv"
        if info.get("status") != "done" or not metrics.is_file():
            continue
        with open(metrics, newline="", encoding="utf-8") as f:
            epochs = list(csv.DictReader(f))
        inside = sum(float(r["train_seconds"] or 0) + float(r.get("eval_seconds") or 0) for r in epochs)
        wall = float(info["seconds"])
        rows.append(
            {
                "trial_id": info["trial_id"],
                "model": info["model"],
                "seed": info["seed"],
                "resumed": bool(info.get("resumed")),
                "wall_s": wall,
                "train_and_val_s": inside,
                "overhead_s": wall - inside,
                "overhead_share": (wall - inside) / wall if wall else None,
            }
        )
    return rows


def by_model(rows: list[dict]) -> list[dict]:
    """Mean wall, overhead and share per model (resumed trials left out: their wall covers one segment)."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        own = [r for r in rows if r["model"] == model and not r["resumed"]]
        if not own:
            continue
        wall = sum(r["wall_s"] for r in own) / len(own)
        overhead = sum(r["overhead_s"] for r in own) / len(own)
        out.append(
            {
                "model": model,
                "trials": len(own),
                "wall_s": wall,
                "overhead_s": overhead,
                "share": overhead / wall,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("suite_dir", type=Path)
    parser.add_argument("--json", type=Path, default=RESULTS / "suite-overhead.json")
    args = parser.parse_args()
    rows = trial_costs(args.suite_dir)
    if not rows:
        sys.exit(f"{args.suite_dir}: no finished trial")
    table = by_model(rows)
    print(f"{'model':10} {'trials':>6} {'wall s':>8} {'overhead s':>11} {'share':>7}")
    for r in table:
        print(
            f"{r['model']:10} {r['trials']:6d} {r['wall_s']:8.1f} {r['overhead_s']:11.1f} {r['share']:7.1%}"
        )
    result = {"suite_dir": str(args.suite_dir), "machine": machine_info(), "per_model": table, "trials": rows}
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
