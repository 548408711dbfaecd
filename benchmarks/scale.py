"""Large-catalogue check: each model trains one epoch and evaluates once on a synthetic 100k-item catalogue.

A dense item-item matrix of 100,000 items is 40 GB in float32; this script shows that the models with item
graphs (learned or frozen) never build one: each model runs in a fresh process (so its peak RSS is its own),
builds itself on the synthetic dataset (its kNN graphs built beforehand by ``mmprep graph``), trains one full
epoch (or its first ``--max-batches`` batches: every batch of these models touches the whole catalogue, so a few
batches show the memory an epoch needs) and ranks all items for every val user once. On CUDA the peak GPU
memory is recorded too. The dataset has clustered random features (``image`` 128-d, ``text`` 384-d), a
heavy-tailed item popularity and one val and one test item per user; it is written once through mmprep's
DiffMM importer into ``--cache``. ``--baby`` measures on Baby instead: its real interactions (the DiffMM split)
with placeholder features of Baby's sizes (image 4096-d, text 384-d; no Baby feature file exists offline), i.e.
the memory each model needs on Baby. Prints a table and writes JSON.

    python benchmarks/scale.py                                        # 100k items, graph models, default device
    python benchmarks/scale.py --items 20000 --users 10000 --models lattice,freedom --device cpu --threads 1
    python benchmarks/scale.py --models micro,mmssl,mdmns --max-batches 2 --set mmssl:D_max_hidden=128
    python benchmarks/scale.py --baby --device cuda --models lattice,micro,mmssl      # -> results/scale-baby.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DIFFMM_SOURCES, RESULTS, machine_info, sets_for

GRAPH_MODELS = "lattice,micro,freedom,mgcn,soil,bm3"


def synthetic_dataset(
    cache: Path, n_users: int, n_items: int, per_user: int, seed: int, graph_index: str
) -> Path:
    """A DiffMM-format catalogue imported with mmprep, with its kNN graphs (reused when it already exists)."""
    import scipy.sparse as sp

    from mmprep.interop import import_diffmm

    out = cache / f"synthetic-{n_users}x{n_items}-{per_user}"
    if (out / "graphs").is_dir():
        return out
    rng = np.random.default_rng(seed)
    popularity = rng.zipf(1.3, n_items).astype(np.float64)
    popularity /= popularity.sum()
    # per_user distinct items per user, drawn by popularity (Gumbel top-k: no Python loop over users)
    keys = np.log(popularity)[None, :]
    picks = np.empty((n_users, per_user), dtype=np.int64)
    for start in range(0, n_users, 1024):
        block = keys + rng.gumbel(size=(min(1024, n_users - start), n_items))
        picks[start : start + block.shape[0]] = np.argpartition(-block, per_user, axis=1)[:, :per_user]
    src = cache / f"{out.name}-src"
    src.mkdir(parents=True, exist_ok=True)
    users = np.repeat(np.arange(n_users), per_user).reshape(n_users, per_user)
    parts = {"trnMat.pkl": slice(0, per_user - 2), "valMat.pkl": slice(-2, -1), "tstMat.pkl": slice(-1, None)}
    for name, cols in parts.items():
        u, i = users[:, cols].ravel(), picks[:, cols].ravel()
        matrix = sp.coo_matrix((np.ones(u.size, dtype=np.float32), (u, i)), shape=(n_users, n_items))
        with open(src / name, "wb") as f:
            pickle.dump(matrix, f)
    write_features(rng, n_items, {"image": 128, "text": 384}, src)
    import_diffmm(src, out, name=out.name, overwrite=True)
    build_graphs(out, graph_index)
    return out


def baby_shaped_dataset(cache: Path, graph_index: str) -> Path:
    """Baby's real DiffMM split with clustered random features of Baby's published sizes (image 4096-d, text
    384-d), for the memory a model needs on Baby: no Baby feature file exists offline (shared/data PROVENANCE)."""
    import scipy.sparse as sp

    from mmprep.interop import import_diffmm

    out = cache / "baby-shaped"
    if (out / "graphs").is_dir():
        return out
    src = cache / f"{out.name}-src"
    src.mkdir(parents=True, exist_ok=True)
    for name in ("trnMat.pkl", "valMat.pkl", "tstMat.pkl"):
        shutil.copyfile(DIFFMM_SOURCES["baby"] / name, src / name)
    with open(src / "trnMat.pkl", "rb") as f:
        n_items = sp.coo_matrix(pickle.load(f)).shape[1]
    write_features(np.random.default_rng(0), n_items, {"image": 4096, "text": 384}, src)
    import_diffmm(src, out, name=out.name, overwrite=True)
    build_graphs(out, graph_index)
    return out


def write_features(rng: np.random.Generator, n_items: int, dims: dict[str, int], src: Path) -> None:
    """``{modality}_feat.npy`` per modality: 64 random cluster centres plus noise (kNN graphs with structure)."""
    cluster = rng.integers(0, 64, n_items)
    for modality, dim in dims.items():
        base = rng.normal(size=(64, dim)).astype(np.float32)
        feat = base[cluster] + 0.5 * rng.normal(size=(n_items, dim)).astype(np.float32)
        np.save(src / f"{modality}_feat.npy", feat.astype(np.float32))


def build_graphs(dataset: Path, graph_index: str) -> None:
    """The stored image and text kNN graphs mmtrain reads, built by ``mmprep graph``."""
    mmprep = Path(sys.executable).with_name("mmprep")
    cmd = [
        str(mmprep),
        "graph",
        str(dataset),
        "--modality",
        "image",
        "--modality",
        "text",
        "--index",
        graph_index,
    ]
    subprocess.run(cmd, check=True)


def model_sets(items: list[str], model: str) -> list[tuple[str, object]]:
    """The ``--set`` pairs that apply to ``model`` (:func:`_common.sets_for`), parsed."""
    from mmtrain.config import parse_set

    return [parse_set(item) for item in sets_for(items, model)]


def run_one(dataset: Path, model: str, device: str, threads: int, sets: list[str], max_batches: int) -> dict:
    """Build, train one epoch (its first ``max_batches`` batches when > 0), evaluate once (in this process);
    seconds and peak memory."""
    from mmtrain.experiment import build_model, make_config, prepare
    from mmtrain.runs import peak_memory, reset_peak_memory
    from mmtrain.trainer import Trainer

    base = [("device", device), ("tensorboard", False), ("threads", threads), ("seed", 1)]
    overrides = model_sets(sets, model)
    config = make_config(model, sets=[*base, *overrides])
    data = prepare(dataset, config)
    dev = data.device
    reset_peak_memory(dev)
    start = time.perf_counter()
    trainer = Trainer(build_model(data, config), data, config, progress=False)
    build_s = time.perf_counter() - start
    n_batches = len(trainer.sampler)
    if max_batches > 0:
        n_batches = min(n_batches, max_batches)
        full_epoch = trainer.sampler.epoch
        trainer.sampler.epoch = lambda: itertools.islice(full_epoch(), n_batches)
    start = time.perf_counter()
    losses = trainer.train_epoch(1)
    epoch_s = time.perf_counter() - start
    start = time.perf_counter()
    val = trainer.evaluator.evaluate(trainer.model, "val")
    eval_s = time.perf_counter() - start
    memory = peak_memory(dev)
    return {
        "model": model,
        "device": str(dev),
        "n_users": data.n_users,
        "n_items": data.n_items,
        "train_pairs": len(data.train),
        "batches": n_batches,
        "sets": overrides,
        "build_seconds": build_s,
        "epoch_seconds": epoch_s,
        "eval_seconds": eval_s,
        "loss": losses["loss"],
        "val_recall@20": val["recall@20"],
        "peak_rss_mib": memory["rss"],
        "peak_gpu_mib": memory["gpu"],
        "dense_item_matrix_mib": data.n_items**2 * 4 / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--baby",
        action="store_true",
        help="Baby's real interactions with placeholder features of its sizes instead of the synthetic catalogue",
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=30_000)
    parser.add_argument("--per-user", type=int, default=12, help="interactions per user (2 held out)")
    parser.add_argument("--models", default=GRAPH_MODELS, help="comma-separated registered model names")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/modalrec-bench"))
    parser.add_argument("--graph-index", default="hnsw", choices=["exact", "ivf", "hnsw"])
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per model before it is skipped")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="[MODEL:]KEY=VALUE",
        help="config override for every model, or for one (e.g. mmssl:D_max_hidden=128)",
    )
    parser.add_argument(
        "--max-batches", type=int, default=0, help="train only this many batches of the epoch (0: all)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON [results/scale.json, scale-baby.json]")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child process: one model
    args = parser.parse_args()
    if args.one:
        dataset, model = args.one.split("::")
        print(
            json.dumps(run_one(Path(dataset), model, args.device, args.threads, args.sets, args.max_batches))
        )
        return
    args.out = args.out or RESULTS / ("scale-baby.json" if args.baby else "scale.json")
    if args.baby:
        dataset = baby_shaped_dataset(args.cache, args.graph_index)
    else:
        dataset = synthetic_dataset(args.cache, args.users, args.items, args.per_user, 0, args.graph_index)
    info = machine_info()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(
        "| model | device | items | train pairs | batches | build s | train s | eval s | peak RSS MiB | "
        "peak GPU MiB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    rows = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        rows.append(run_child(dataset, model, args, args.timeout))
        print(table_row(rows[-1]), flush=True)
        # written after every model, so a long sweep that is stopped keeps what finished
        args.out.write_text(
            json.dumps({"machine": info, "dataset": str(dataset), "results": rows}, indent=2) + "\n"
        )
    print(f"wrote {args.out}")


def run_child(dataset: Path, model: str, args: argparse.Namespace, timeout: int) -> dict:
    """:func:`run_one` in a fresh process (its own peak RSS); a failure or timeout becomes an error row."""
    cmd = [sys.executable, __file__, "--one", f"{dataset}::{model}", "--device", args.device]
    cmd += ["--threads", str(args.threads), "--max-batches", str(args.max_batches)]
    for item in args.sets:
        cmd += ["--set", item]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"model": model, "error": f"timeout after {timeout} s"}
    if proc.returncode != 0:
        return {"model": model, "error": proc.stderr.strip().splitlines()[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table_row(r: dict) -> str:
    if "error" in r:
        return f"| {r['model']} | failed: {r['error']} |"
    gpu = f"{r['peak_gpu_mib']:.0f}" if r["peak_gpu_mib"] is not None else "-"
    return (
        f"| {r['model']} | {r['device']} | {r['n_items']} | {r['train_pairs']} | {r['batches']} | "
        f"{r['build_seconds']:.1f} | {r['epoch_seconds']:.1f} | {r['eval_seconds']:.1f} | {r['peak_rss_mib']:.0f} | "
        f"{gpu} |"
    )


if __name__ == "__main__":
    main()
