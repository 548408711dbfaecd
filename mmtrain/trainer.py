"""The training loop: Adam, BPR batches, periodic validation, early stopping, best checkpoint, one final test.

Model selection uses validation only (``valid_metric``, default Recall@20): the best epoch is the one with
the highest value (strict improvement), and training stops once more than ``patience`` consecutive
evaluations have not improved it (MMRec's ``cur_step > stopping_step``), or once ``max_minutes`` of wall
time (training and validation) are spent; an epoch that ends a run is always validated. The test split is
evaluated once, after training, with the best epoch's weights.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mmformat.progress import bar as progress_bar
from mmtrain.data.loader import TrainData
from mmtrain.data.sampler import BPRSampler
from mmtrain.errors import TrainError
from mmtrain.evaluator import Evaluator
from mmtrain.models.base import Model
from mmtrain.runs import RunDir

log = logging.getLogger(__name__)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; with ``deterministic`` ask torch for deterministic kernels (warn only)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` found: the best epoch and its validation metrics, and timings."""

    best_epoch: int
    best_val: dict[str, float]
    epochs_run: int
    stopped_early: bool
    stop_reason: str = "epochs"  # epochs, patience or time
    train_seconds: list[float] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)

    @property
    def seconds_per_epoch(self) -> float:
        return float(np.mean(self.train_seconds)) if self.train_seconds else 0.0

    @property
    def seconds_per_eval(self) -> float:
        return float(np.mean(self.eval_seconds)) if self.eval_seconds else 0.0


class Trainer:
    """Trains ``model`` on ``data`` with the trainer keys of ``config`` (see mmtrain.config)."""

    def __init__(
        self,
        model: Model,
        data: TrainData,
        config: dict[str, Any],
        run: RunDir | None = None,
        progress: bool = True,
    ):
        self.model, self.data, self.config, self.run = model, data, config, run
        self.progress = progress
        self.device = data.device
        optimizer = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[config["optimizer"]]
        self.optimizer = optimizer(
            model.main_parameters(), lr=config["lr"], weight_decay=config["weight_decay"]
        )
        decay, step = config["lr_decay"], config["lr_decay_step"]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda e: decay ** (e / step))
        # the run's one random source: the sampler, the model's epoch hook and every batch draw from it
        self.generator = torch.Generator(device=self.device).manual_seed(config["seed"])
        self.sampler = BPRSampler(
            data.train, config["batch_size"], self.generator, pool=config["neg_items"], mode=config["sampler"]
        )
        self.evaluator = Evaluator.from_config(data, config)
        self.amp_dtype = torch.bfloat16 if self.device.type == "cpu" else torch.float16
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=config["amp"] and self.device.type == "cuda"
        )
        self.loss_fn = torch.compile(model.loss, dynamic=True) if config["compile"] else model.loss
        self.best_state: dict[str, torch.Tensor] | None = None

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training pairs; returns the mean of each loss part."""
        self.model.train()
        self.model.on_epoch_start(epoch, self.generator)
        totals: dict[str, torch.Tensor] = {}
        n_batches = 0
        for batch in self.sampler.epoch():
            auxiliary = self.model.auxiliary_step(batch)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.config["amp"]):
                out = self.loss_fn(batch)
            parts = out if isinstance(out, dict) else {"loss": out}
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(parts["loss"]).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            for name, value in {**auxiliary, **parts}.items():
                totals[name] = totals.get(name, 0.0) + value.detach().float()
            n_batches += 1
        self.scheduler.step()
        means = {name: float(v) / n_batches for name, v in totals.items()}
        if not math.isfinite(means["loss"]):
            raise TrainError(f"training loss became {means['loss']} at epoch {epoch} (try a smaller lr)")
        return means

    def fit(self) -> FitResult:
        """Train until ``epochs`` or early stopping; keeps (and saves) the best validation state."""
        cfg = self.config
        metric = cfg["valid_metric"]
        best_value, best_epoch, best_val, bad_evals = -math.inf, 0, {}, 0
        result = FitResult(0, {}, 0, False)
        budget = cfg["max_minutes"] * 60 or math.inf
        fit_start = time.perf_counter()
        bar = progress_bar(
            range(1, cfg["epochs"] + 1), desc=cfg["model"], unit="ep", disable=None if self.progress else True
        )
        for epoch in bar:
            start = time.perf_counter()
            losses = self.train_epoch(epoch)
            result.train_seconds.append(time.perf_counter() - start)
            result.epochs_run = epoch
            row: dict[str, Any] = {"epoch": epoch, **losses, "lr": self.scheduler.get_last_lr()[0]}
            row["train_seconds"] = round(result.train_seconds[-1], 4)
            out_of_time = time.perf_counter() - fit_start >= budget
            if epoch % cfg["eval_every"] == 0 or epoch == cfg["epochs"] or out_of_time:
                start = time.perf_counter()
                val = self.evaluator.evaluate(self.model, "val")
                result.eval_seconds.append(time.perf_counter() - start)
                row["eval_seconds"] = round(result.eval_seconds[-1], 4)
                row.update({f"val_{k}": v for k, v in val.items() if k != "n_users"})
                improved = val[metric] > best_value
                if improved:
                    best_value, best_epoch, best_val, bad_evals = val[metric], epoch, val, 0
                    self.best_state = copy.deepcopy(self.model.state_dict())
                    if self.run is not None:
                        self.run.save_checkpoint(self.checkpoint(epoch, val))
                else:
                    bad_evals += 1
                log.info(
                    "epoch %d loss %.5f val %s %.5f%s (%.1fs train, %.1fs eval)",
                    epoch,
                    losses["loss"],
                    metric,
                    val[metric],
                    " *" if improved else "",
                    result.train_seconds[-1],
                    result.eval_seconds[-1],
                )
                bar.set_postfix(loss=f"{losses['loss']:.4f}", val=f"{val[metric]:.4f}", best=best_epoch)
                if bad_evals > cfg["patience"]:
                    result.stopped_early, result.stop_reason = True, "patience"
            if self.run is not None:
                self.run.log_epoch(row)
            if result.stopped_early:
                log.info("early stop at epoch %d: %d evaluations without improvement", epoch, bad_evals)
                break
            if out_of_time and epoch < cfg["epochs"]:
                result.stop_reason = "time"
                log.info("time budget of %g min spent after epoch %d", cfg["max_minutes"], epoch)
                break
        bar.close()
        result.best_epoch, result.best_val = best_epoch, best_val
        return result

    def checkpoint(self, epoch: int, val: dict[str, float]) -> dict[str, Any]:
        """A self-describing checkpoint: enough to rebuild the model on the same dataset (``mmtrain eval``)."""
        return {
            "model": self.config["model"],
            "config": self.config,
            "epoch": epoch,
            "val": val,
            "dataset": str(self.data.root.resolve()),
            "dataset_manifest_sha256": self.data.manifest_sha256(),
            "state_dict": self.model.state_dict(),
        }

    def test(self) -> dict[str, float]:
        """Load the best validation state and evaluate the test split (once)."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return self.evaluator.evaluate(self.model, "test")
