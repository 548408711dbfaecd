"""Data-parallel training speed: seconds per epoch and per validation for 1 vs N processes (``--nproc``).

Each (model, process count) is one real ``mmtrain run`` (the CLI, in a subprocess) on the dataset with the
model's recipe, ``--set threads=1`` per rank (so N processes use N cores), ``--epochs`` epochs, validation after
every epoch, no checkpoint cost difference (both write the same run directory). From its metrics.csv: the median
``train_seconds`` of the epochs after the first (the first pays lazy initialisation) and the median
``eval_seconds``; also the wall time of the whole command (process start, data loading, test, files), the CPU
seconds of all its processes together (the work replicated on every rank shows there, whatever the load) and
the final validation Recall@20 (equal up to float summation order between process counts). Prints a table and
writes ``benchmarks/results/ddp.json`` after every run, so an interrupted benchmark keeps what it measured.

    python benchmarks/ddp.py                                      # LightGCN and FREEDOM on out/tiktok, 1 and 2
    python benchmarks/ddp.py --dataset out/tiktok --models lightgcn --nprocs 1,2,4 --epochs 5
    python benchmarks/ddp.py --device cuda --nprocs 1,8            # on a machine with 8 GPUs (NCCL)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, RESULTS, machine_info


def bench(dataset: Path, model: str, nproc: int, epochs: int, device: str, out: Path) -> dict:
    """One ``mmtrain run`` on ``nproc`` processes; its per-epoch and per-validation medians and wall time."""
    name = f"{model}-n{nproc}"
    command = [sys.executable, "-m", "mmtrain", "-q", "run", "--model", model, "--dataset", str(dataset)]
    command += ["--out", str(out), "--name", name, "--device", device]
    command += ["--set", f"epochs={epochs}", "--set", "eval_every=1", "--set", "patience=1000"]
    command += ["--set", "tensorboard=false"]
    if device == "cpu":
        command += ["--set", "threads=1"]
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    final = json.loads(done.stdout)
    with (out / name / "metrics.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    train = [float(r["train_seconds"]) for r in rows]
    evals = [float(r["eval_seconds"]) for r in rows]
    return {
        "model": model,
        "nproc": nproc,
        "device": device,
        "epochs": len(rows),
        "seconds_per_epoch": statistics.median(train[1:] or train),
        "seconds_per_eval": statistics.median(evals[1:] or evals),
        "epoch_seconds": train,
        "eval_seconds": evals,
        "wall_seconds": round(wall, 2),
        "cpu_seconds_all_processes": round(cpu, 2),
        "val_recall@20_last_epoch": float(rows[-1]["val_recall@20"]),
        "world_size": final.get("world_size", 1),
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
    }


def table(rows: list[dict]) -> str:
    """A markdown table: speed-up against the 1-process run of the same model."""
    base = {r["model"]: r for r in rows if r["nproc"] == 1}
    lines = [
        "| model | processes | s/epoch | speed-up | s/val eval | wall s | CPU s (all ranks) | val R@20 (last epoch) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = base.get(r["model"])
        speedup = f"{ref['seconds_per_epoch'] / r['seconds_per_epoch']:.2f}x" if ref else "-"
        lines.append(
            f"| {r['model']} | {r['nproc']} | {r['seconds_per_epoch']:.2f} | {speedup} | "
            f"{r['seconds_per_eval']:.3f} | {r['wall_seconds']:.0f} | {r.get('cpu_seconds_all_processes', '-')} | "
            f"{r['val_recall@20_last_epoch']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", type=Path, default=REPO / "out" / "tiktok")
    parser.add_argument("--models", default="lightgcn,freedom")
    parser.add_argument("--nprocs", default="1,2", help="comma-separated process counts")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS / "ddp.json")
    args = parser.parse_args()
    if not args.dataset.is_dir():
        raise SystemExit(f"{args.dataset}: no dataset directory (write it with mmprep first)")
    rows: list[dict] = []
    result = {"machine": machine_info(), "dataset": str(args.dataset), "epochs": args.epochs, "runs": rows}
    with tempfile.TemporaryDirectory(prefix="ddp-bench-") as tmp:
        for model in args.models.split(","):
            for nproc in (int(n) for n in args.nprocs.split(",")):
                rows.append(bench(args.dataset, model, nproc, args.epochs, args.device, Path(tmp)))
                print(json.dumps(rows[-1]), flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(rows))


if __name__ == "__main__":
    main()
