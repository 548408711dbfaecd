"""CPU seconds per training step of one model on TikTok, one thread (issue 15's before/after rows in BENCHMARKS.md).

    PYTHONPATH=<checkout> python benchmarks/parity/seed_speed.py MODEL BATCHES [KEY=VALUE ...]

A step is what the trainer does per batch: the model's auxiliary step (MMSSL's discriminator, MDMNS's denoisers),
its loss, the backward pass and an optimizer step. The epoch start (MDMNS regenerates its graphs there) is timed
once, then one warm-up batch, then ``BATCHES`` timed batches. Process CPU time, not wall time, so the figure
holds on a loaded machine; point PYTHONPATH at an older checkout (``git archive <commit> mmtrain mmformat``) for
the "before" figure. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
import yaml

from mmtrain.data.sampler import BPRSampler
from mmtrain.experiment import build_model, make_config, prepare

DATASET = Path(__file__).resolve().parents[2] / "out" / "tiktok"  # the README's TikTok import


def main() -> int:
    model_name, n = sys.argv[1], int(sys.argv[2])
    sets = {k: yaml.safe_load(v) for k, v in (arg.split("=", 1) for arg in sys.argv[3:])}
    config = make_config(model_name, sets=[("device", "cpu"), ("threads", 1), *sets.items()])
    data = prepare(DATASET, config)
    model = build_model(data, config)
    gen = torch.Generator().manual_seed(1)
    sampler = BPRSampler(
        data.train, config["batch_size"], gen, pool=config["neg_items"], mode=config["sampler"]
    )
    optimizer = torch.optim.AdamW(list(model.main_parameters()), lr=1e-3)
    model.train()
    start = time.process_time()
    model.on_epoch_start(1, gen)
    epoch_start = time.process_time() - start
    batches = sampler.epoch()

    def step() -> None:
        batch = next(batches)
        model.auxiliary_step(batch)
        loss = model.loss(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    start = time.process_time()
    for _ in range(n):
        step()
    per_batch = (time.process_time() - start) / n
    print(
        json.dumps(
            {
                "model": model_name,
                "sets": sets,
                "batches_measured": n,
                "cpu_s_per_batch": round(per_batch, 3),
                "batches_per_epoch": len(sampler),
                "epoch_start_cpu_s": round(epoch_start, 2),
                "est_train_s_per_epoch": round(per_batch * len(sampler) + epoch_start, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
