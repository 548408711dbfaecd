"""MICRO's training step on TikTok with the reference all-item contrastive loss: the autograd formula
(``losses.grace_loss``, checkpointed chunks) against the blockwise loss with hand-written gradients
(``grace.grace_loss_blockwise``), one thread, the same batches, parameters and values.

    python benchmarks/parity/micro_speed.py [--dataset out/tiktok] [--batches 5]

Times whole training steps (forward, backward, Adam) in CPU seconds of this process (``time.process_time``, so
other processes on a shared machine inflate it less than wall time), checks that both losses agree, and writes
benchmarks/results/micro-speed.json; s/epoch is the per-batch time times the original's batch count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import REPO, RESULTS, machine_info

import mmtrain.models.micro as micro
from mmtrain.data.sampler import BPRSampler
from mmtrain.experiment import build_model, make_config, prepare
from mmtrain.models.grace import grace_loss_blockwise
from mmtrain.models.losses import grace_loss

SETS = [("device", "cpu"), ("threads", 1), ("batch_size", 1024), ("sampler", "users"), ("neg_items", "all")]


def time_steps(dataset: Path, loss_fn, batches: int, cl_anchors: int) -> tuple[list[float], list[float]]:
    """CPU seconds and total loss of ``batches`` training steps (after one warm-up step that builds graphs)."""
    micro.grace_loss_blockwise = loss_fn
    config = make_config("micro", sets=[*SETS, ("seed", 1), ("cl_anchors", cl_anchors)])
    data = prepare(dataset, config)
    model = build_model(data, config)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    generator = torch.Generator().manual_seed(1)
    sampler = BPRSampler(data.train, 1024, generator, pool="all", mode="users")
    model.train()
    model.on_epoch_start(0, generator)
    seconds, losses = [], []
    for i, batch in enumerate(sampler.epoch()):
        if i > batches:
            break
        start = time.process_time()
        optimizer.zero_grad()
        loss = model.loss(batch)["loss"]
        loss.backward()
        optimizer.step()
        if i > 0:
            seconds.append(time.process_time() - start)
            losses.append(loss.item())
    return seconds, losses


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", type=Path, default=REPO / "out" / "tiktok")
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    n_batch = 59541 // 1024 + 1  # TikTok train pairs // batch + 1, the original's batches per epoch
    result = {"dataset": str(args.dataset), "batches_timed": args.batches, "batches_per_epoch": n_batch}
    for name, fn, anchors in (
        ("autograd", grace_loss, 0),
        ("blockwise", grace_loss_blockwise, 0),
        ("blockwise_anchors_1024", grace_loss_blockwise, 1024),
    ):
        seconds, losses = time_steps(args.dataset, fn, args.batches, anchors)
        per_batch = statistics.median(seconds)
        result[name] = {"s_per_batch": per_batch, "s_per_epoch": per_batch * n_batch, "losses": losses}
        print(name, f"{per_batch:.2f} s/batch", f"{per_batch * n_batch:.0f} s/epoch", losses, flush=True)
    same = all(
        abs(x - y) <= 1e-4 * abs(x)
        for x, y in zip(result["autograd"]["losses"], result["blockwise"]["losses"], strict=True)
    )
    result["losses_equal"] = same
    result["speedup"] = result["autograd"]["s_per_batch"] / result["blockwise"]["s_per_batch"]
    result["machine"] = machine_info(threads=1)
    path = RESULTS / "micro-speed.json"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    print(path)


if __name__ == "__main__":
    main()
