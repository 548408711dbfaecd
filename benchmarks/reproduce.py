"""Published-table check: every model trained on a real dataset with its recipe, next to the published number.

For each model one ``mmtrain run`` in its own process, with the recipe's hyperparameters, ``--legacy-ndcg
lattice`` (the NDCG the LATTICE-family papers report) and ``--set max_minutes=M`` (a wall-clock budget: the run
stops after the epoch that spends it, and the test split is still evaluated once at the best val epoch). The
table puts test Recall@20 / NDCG@20 next to the published LATTICE-split numbers (docs/evaluation.md "Published numbers")
and next to LightGCN on the same split, and gives each run's epochs, seconds per epoch and peak memory (GPU
allocated, process RSS) from its ``final.json``. Rows are printed as models finish; the JSON is rewritten after
each, so a sweep that is stopped keeps what finished.

Datasets are imported from ``../shared/data`` into ``--cache``/NAME once with mmprep (the same directory
``train.py`` uses): ``tiktok`` (DiffMM pickles, image + audio features) and ``baby`` (DiffMM pickles,
interactions only: ID models such as mf and lightgcn). ``--split cold`` first adds mmprep's MICRO cold-start
split to a copy of the dataset; each cold run ranks all items (MICRO's protocol), and its best checkpoint is
also evaluated ranking only the cold items (``cold_candidates=cold``, the last column).

    python benchmarks/reproduce.py --device cuda --minutes 20                 # every model on TikTok
    python benchmarks/reproduce.py --device cuda --minutes 2 --models lightgcn,micro,mmgcn,mmssl,mdmns
    python benchmarks/reproduce.py --device cuda --minutes 3 --models micro --split cold
    python benchmarks/reproduce.py --device cpu --models lightgcn,freedom --set threads=1
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DIFFMM_SOURCES, RESULTS, diffmm_dataset, machine_info, sets_for

ALL_MODELS = "lightgcn,mf,vbpr,mmgcn,lattice,micro,freedom,mgcn,bm3,slmrec,mmssl,soil,mdmns"

# docs/evaluation.md "Published numbers": Recall@20, NDCG@20 on the LATTICE-style split (selected on test by the papers)
PUBLISHED = {
    "tiktok": {
        "mf": (0.0346, 0.0130),
        "lightgcn": (0.0653, 0.0282),
        "vbpr": (0.0380, 0.0134),
        "mmgcn": (0.0730, 0.0307),
        "lattice": (0.0843, 0.0367),
        "slmrec": (0.0845, 0.0353),
        "bm3": (0.0957, 0.0404),
        "mmssl": (0.0921, 0.0392),
        "mdmns": (0.1193, 0.0525),
    },
    "baby": {
        "mf": (0.0440, 0.0200),
        "lightgcn": (0.0698, 0.0319),
        "vbpr": (0.0486, 0.0213),
        "mmgcn": (0.0640, 0.0284),
        "lattice": (0.0829, 0.0368),
        "slmrec": (0.0765, 0.0325),
        "bm3": (0.0839, 0.0361),
        "mmssl": (0.0962, 0.0422),
        "mdmns": (0.1009, 0.0433),
    },
}


def dataset_dir(cache: Path, name: str, split: str) -> Path:
    """The mmprep dataset directory of ``name`` (imported on first use; with the cold split for ``cold``)."""
    warm = diffmm_dataset(cache, name)
    if split == "warm":
        return warm
    cold = cache / f"{name}-cold"
    if not (cold / "cold").is_dir():
        shutil.rmtree(cold, ignore_errors=True)
        shutil.copytree(warm, cold)
        mmprep = Path(sys.executable).with_name("mmprep")
        subprocess.run([str(mmprep), "cold-start", str(cold)], check=True)
    return cold


def run_model(
    dataset: Path, model: str, split: str, device: str, minutes: float, sets: list[str], runs: Path
) -> dict:
    """One ``mmtrain run`` in a fresh process; its ``final.json`` plus the command, or an error row."""
    name = f"{model}-{dataset.name}-{split}"
    cmd = [str(Path(sys.executable).with_name("mmtrain")), "-q", "run", "--model", model]
    cmd += ["--dataset", str(dataset), "--split", split, "--device", device, "--legacy-ndcg", "lattice"]
    cmd += [
        "--out",
        str(runs),
        "--name",
        name,
        "--set",
        "tensorboard=false",
        "--set",
        f"max_minutes={minutes}",
    ]
    for item in sets_for(sets, model):
        cmd += ["--set", item]
    # the budget bounds training + validation; building the model and the test pass come on top
    timeout = minutes * 60 * 1.5 + 900
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"model": model, "error": f"timeout after {timeout:.0f} s", "command": cmd}
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["no output"]
        return {"model": model, "error": lines[-1], "command": cmd}
    final = json.loads((runs / name / "final.json").read_text())
    if split == "cold":
        final["cold_items_only"] = cold_only_metrics(runs / name / "best.pt", device, timeout)
    return {**final, "wall_seconds": time.perf_counter() - start, "command": cmd, "run_dir": str(runs / name)}


def cold_only_metrics(checkpoint: Path, device: str, timeout: float) -> dict:
    """``mmtrain eval`` of a cold run's best checkpoint ranking only the cold items of each role (the other
    common cold-start protocol; the run itself ranks all items, as MICRO's reference)."""
    cmd = [str(Path(sys.executable).with_name("mmtrain")), "-q", "eval", str(checkpoint), "--device", device]
    cmd += ["--set", "cold_candidates=cold"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(proc.stdout)


def table_row(r: dict, published: dict, lightgcn: float | None) -> str:
    if "error" in r:
        return f"| {r['model']} | failed: {r['error']} |"
    recall, ndcg = r["test"]["recall@20"], r["test"]["ndcg_lattice@20"]
    pub = published.get(r["model"])
    pub_text = f"{pub[0]:.4f} / {pub[1]:.4f}" if pub else "not in 4b"
    delta = f"{(recall / pub[0] - 1) * 100:+.1f}%" if pub else "-"
    above = "-" if lightgcn is None or r["model"] == "lightgcn" else ("yes" if recall > lightgcn else "no")
    memory = r.get("peak_memory_mib", {})
    gpu = f"{memory['gpu']:.0f}" if memory.get("gpu") is not None else "-"
    rss = f"{memory['rss']:.0f}" if memory.get("rss") is not None else "-"
    row = (
        f"| {r['model']} | {r['best_epoch']} / {r['epochs_run']} ({r['stop_reason']}) | "
        f"{r['seconds_per_epoch']:.1f} | {r['val']['recall@20']:.4f} | {recall:.4f} | {ndcg:.4f} | {pub_text} | "
        f"{delta} | {above} | {gpu} | {rss} |"
    )
    if "cold_items_only" in r:
        cold = r["cold_items_only"]
        row += (
            " failed |"
            if "error" in cold
            else f" {cold['test']['recall@20']:.4f} / {cold['test']['ndcg@20']:.4f} |"
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="tiktok", choices=sorted(DIFFMM_SOURCES))
    parser.add_argument("--split", default="warm", choices=["warm", "cold"])
    parser.add_argument("--models", default=ALL_MODELS, help="comma-separated registered model names")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget per model (max_minutes)")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        help="KEY=VALUE for every run, MODEL:KEY=VALUE for one model's",
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/modalrec-bench"))
    parser.add_argument("--out", type=Path, default=None, help="JSON [results/reproduce-DATASET-SPLIT.json]")
    args = parser.parse_args()
    out = args.out or RESULTS / f"reproduce-{args.dataset}-{args.split}.json"
    dataset = dataset_dir(args.cache, args.dataset, args.split)
    runs = args.cache / f"runs-{time.strftime('%Y%m%d-%H%M%S')}"
    info = machine_info()
    published = PUBLISHED[args.dataset] if args.split == "warm" else {}
    header = (
        "| model | best / run (stop) | s/epoch | val R@20 | test R@20 | test N@20 | published R@20 / N@20 | "
        "Δ R@20 | > LightGCN | peak GPU MiB | peak RSS MiB |"
    )
    rule = "|---|---|---:|---:|---:|---:|---|---:|---|---:|---:|"
    if args.split == "cold":
        header, rule = header + " test R@20 / N@20 among cold items |", rule + "---:|"
    print(header)
    print(rule, flush=True)
    rows: list[dict] = []
    lightgcn = None
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        rows.append(run_model(dataset, model, args.split, args.device, args.minutes, args.sets, runs))
        if model == "lightgcn" and "error" not in rows[-1]:
            lightgcn = rows[-1]["test"]["recall@20"]
        print(table_row(rows[-1], published, lightgcn), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"machine": info, "dataset": str(dataset), "split": args.split, "minutes": args.minutes}
        out.write_text(json.dumps({**doc, "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
