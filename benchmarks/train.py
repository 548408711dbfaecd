"""mmtrain speed: seconds per training epoch and per full-ranking evaluation (LightGCN by default).

The dataset is a directory written by mmprep; by default the Baby DiffMM split from ``../shared/data`` is
imported once into ``--cache``/baby (``mmprep`` import of the pickles; the same directory ``reproduce.py``
uses). One warm-up epoch and one warm-up evaluation are run first (allocator, lazy init), then ``--epochs``
timed epochs and ``--evals`` timed evaluations of the val split (every val user, all items ranked, train items
masked, top-50). Times are medians; on CUDA every measurement is synchronised. Prints a table and writes JSON
to ``benchmarks/results/train.json``.

    python benchmarks/train.py                                   # LightGCN on Baby, default device
    python benchmarks/train.py --device cpu --threads 1 --models lightgcn,mf
    python benchmarks/train.py --dataset /data/tiktok --device cuda --epochs 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, diffmm_dataset, machine_info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def bench_model(dataset: Path, model: str, device: str, epochs: int, evals: int, threads: int) -> dict:
    """Median seconds per epoch and per full val evaluation of one model with its recipe's config."""
    from mmtrain.experiment import build_model, make_config, prepare
    from mmtrain.runs import cpu_name
    from mmtrain.trainer import Trainer

    sets = [("device", device), ("tensorboard", False), ("threads", threads)]
    config = make_config(model, sets=sets)
    data = prepare(dataset, config)
    trainer = Trainer(build_model(data, config), data, config, progress=False)
    dev = data.device
    timed(lambda: trainer.train_epoch(0), dev)
    epoch_s = [timed(lambda e=e: trainer.train_epoch(e), dev) for e in range(1, epochs + 1)]
    timed(lambda: trainer.evaluator.evaluate(trainer.model, "val"), dev)
    eval_s = [timed(lambda: trainer.evaluator.evaluate(trainer.model, "val"), dev) for _ in range(evals)]
    return {
        "model": model,
        "dataset": data.name,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(),
        "train_pairs": len(data.train),
        "batches_per_epoch": len(trainer.sampler),
        "batch_size": config["batch_size"],
        "eval_users": int(trainer.evaluator.eval_users("val").numel()),
        "n_items": data.n_items,
        "seconds_per_epoch": statistics.median(epoch_s),
        "seconds_per_eval": statistics.median(eval_s),
        "epoch_seconds": epoch_s,
        "eval_seconds": eval_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dataset", type=Path, default=None, help="mmprep dataset dir (default: Baby DiffMM)"
    )
    parser.add_argument(
        "--cache", type=Path, default=Path("/tmp/modalrec-bench"), help="Baby is imported into CACHE/baby"
    )
    parser.add_argument("--models", default="lightgcn", help="comma-separated registered model names")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up)")
    parser.add_argument("--evals", type=int, default=3, help="timed full evaluations (after one warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--out", type=Path, default=RESULTS / "train.json")
    args = parser.parse_args()
    dataset = args.dataset or diffmm_dataset(args.cache, "baby")
    rows = [
        bench_model(dataset, m.strip(), args.device, args.epochs, args.evals, args.threads)
        for m in args.models.split(",")
        if m.strip()
    ]
    print(
        "| model | dataset | device | threads | train pairs | batches | s/epoch | eval users | s/full eval |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['dataset']} | {r['device']} ({r['device_name']}) | {r['threads']} | "
            f"{r['train_pairs']} | {r['batches_per_epoch']} | {r['seconds_per_epoch']:.3f} | "
            f"{r['eval_users']} | {r['seconds_per_eval']:.3f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    info = machine_info(torch=torch.__version__)
    args.out.write_text(json.dumps({"machine": info, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
