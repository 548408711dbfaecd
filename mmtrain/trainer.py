"""The training loop: Adam, BPR batches, periodic validation, early stopping, best checkpoint, one final test.

Model selection uses validation only (``valid_metric``, default Recall@20): the best epoch is the one with
the highest value (strict improvement), and training stops once more than ``patience`` consecutive
evaluations have not improved it (MMRec's ``cur_step > stopping_step``), or once ``max_minutes`` of wall
time (training and validation) are spent. The budget is checked after every batch: when it runs out inside
an epoch, that epoch ends there (a partial epoch, marked in metrics.csv with ``batches_done`` of
``batches``). An epoch that ends a run is always validated. The test split is evaluated once, after
training, with the best epoch's weights.

Inside an epoch, progress is a batch bar under the epoch bar on a terminal, else one log line every
:data:`LOG_EVERY_SECONDS` (batch i/n, mean loss so far, seconds per batch, time left in the epoch).

Resume: after every epoch :meth:`Trainer.resume_state` is written to ``last.pt`` (model, optimizers,
scheduler, every random state, early-stopping state, the metrics rows, the time spent);
:meth:`Trainer.restore` puts a new trainer back exactly there, so on CPU a resumed run is bit-identical to
an uninterrupted one.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from mmformat.progress import bar as progress_bar
from mmtrain.data.loader import TrainData
from mmtrain.data.sampler import Batch, BPRSampler
from mmtrain.distributed import LOCAL, DistContext
from mmtrain.errors import TrainError
from mmtrain.evaluator import Evaluator
from mmtrain.models.base import Model
from mmtrain.runs import RunDir

log = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 30.0  # without a terminal: one progress line per this many seconds inside an epoch
RESUME_FORMAT = 1  # version of the last.pt layout (Trainer.resume_state)


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


class BatchProgress:
    """Progress inside one epoch: a batch bar under the epoch bar on a terminal, else one log line every
    :data:`LOG_EVERY_SECONDS` with batch i/n, the mean loss so far, seconds per batch and the epoch's ETA."""

    def __init__(self, epoch: int, total: int, show_bar: bool):
        self.epoch, self.total = epoch, total
        self.start = self.last = time.perf_counter()
        self.bar = (
            progress_bar(total=total, desc=f"epoch {epoch}", unit="batch", position=1, leave=False)
            if show_bar
            else None
        )

    def update(self, done: int, loss_sum: torch.Tensor) -> None:
        """Count one finished batch; ``loss_sum`` (the epoch's summed loss) is read only when a loss is shown,
        as reading it waits for a GPU."""
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.update(1)
            if now - self.last >= 1.0:
                self.last = now
                self.bar.set_postfix(loss=f"{float(loss_sum) / done:.4f}", refresh=False)
            return
        if now - self.last < LOG_EVERY_SECONDS:
            return
        self.last = now
        per_batch = (now - self.start) / done
        log.info(
            "epoch %d batch %d/%d loss %.5f %.3f s/batch ETA %s",
            self.epoch,
            done,
            self.total,
            float(loss_sum) / done,
            per_batch,
            duration(per_batch * (self.total - done)),
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def duration(seconds: float) -> str:
    """``1h02m03s``, ``4m05s`` or ``6s``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Trainer:
    """Trains ``model`` on ``data`` with the trainer keys of ``config`` (see mmtrain.config)."""

    def __init__(
        self,
        model: Model,
        data: TrainData,
        config: dict[str, Any],
        run: RunDir | None = None,
        progress: bool = True,
        dist: DistContext = LOCAL,
    ):
        self.model, self.data, self.config, self.run = model, data, config, run
        self.progress = progress
        self.device = data.device
        self.dist = dist
        # every rank starts from rank 0's weights (equal anyway when the ranks are seeded alike)
        dist.broadcast_state(model)
        self.main_params = list(model.main_parameters())
        optimizer = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[config["optimizer"]]
        self.optimizer = optimizer(self.main_params, lr=config["lr"], weight_decay=config["weight_decay"])
        decay, step = config["lr_decay"], config["lr_decay_step"]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda e: decay ** (e / step))
        # the run's one random source: the sampler, the model's epoch hook and every batch draw from it
        self.generator = torch.Generator(device=self.device).manual_seed(config["seed"])
        self.sampler = BPRSampler(
            data.train, config["batch_size"], self.generator, pool=config["neg_items"], mode=config["sampler"]
        )
        self.evaluator = Evaluator.from_config(data, config, dist)
        self.amp_dtype = torch.bfloat16 if self.device.type == "cpu" else torch.float16
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=config["amp"] and self.device.type == "cuda"
        )
        self.loss_fn = torch.compile(model.loss, dynamic=True) if config["compile"] else model.loss
        self.best_state: dict[str, torch.Tensor] | None = None
        # early-stopping state and what fit() has done so far (all of it saved in last.pt)
        self.best_value, self.best_epoch, self.best_val, self.bad_evals = -math.inf, 0, {}, 0
        self.result = FitResult(0, {}, 0, False)
        self.finished = False  # training is over (last epoch, patience or time); only the test remains
        self.elapsed = 0.0  # seconds of the time budget spent, resumed runs included
        self.deadline = math.inf  # perf_counter() time at which the budget runs out (set by fit)
        self.batches = (0, 0)  # batches done / in the last train_epoch

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training pairs, cut short when the time budget (``self.deadline``) runs out;
        returns the mean of each loss part over the batches done (counts in ``self.batches``).

        In a distributed run every rank draws the same global batch, runs the model's auxiliary step on all of
        it, and the main loss on its own rows (:meth:`_share`); the gradients are then summed across ranks,
        weighted by each rank's share of the batch, and the logged loss parts are those of the global batch."""
        self.model.train()
        self.model.on_epoch_start(epoch, self.generator)
        self.dist.broadcast_state(self.model, buffers_only=True)  # rank 0's buffers after a hook that drew
        totals: dict[str, torch.Tensor] = {}
        n_batches, total = 0, len(self.sampler)
        progress = BatchProgress(epoch, total, self.progress and sys.stderr.isatty())
        try:
            for batch in self.sampler.epoch():
                auxiliary = self.model.auxiliary_step(batch)
                share, weight = self._share(batch, epoch, n_batches)
                self.optimizer.zero_grad(set_to_none=True)
                parts: dict[str, torch.Tensor] = {}
                if len(share.users):
                    with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.config["amp"]):
                        out = self.loss_fn(share)
                    parts = out if isinstance(out, dict) else {"loss": out}
                    self.scaler.scale(parts["loss"]).backward()
                stop = self.dist.reduce_gradients(
                    self.main_params, weight, time.perf_counter() >= self.deadline
                )
                self.scaler.step(self.optimizer)
                self.scaler.update()
                # 1 in one process; over the ranks, the parts then sum to world_size times the batch's value
                scale = weight * self.dist.world_size
                for name, value in auxiliary.items():
                    totals[name] = totals.get(name, 0.0) + value.detach().float()
                for name, value in parts.items():
                    totals[name] = totals.get(name, 0.0) + value.detach().float() * scale
                n_batches += 1
                progress.update(n_batches, totals["loss"])
                if stop:
                    break
        finally:
            progress.close()
        self.batches = (n_batches, total)
        self.scheduler.step()
        # buffers the rows' losses updated (running statistics of a BatchNorm) leave the epoch as rank 0's
        self.dist.broadcast_state(self.model, buffers_only=True)
        names = list(totals)  # the same parts in the same order on every rank
        summed = self.dist.sum_tensor(torch.stack([totals[k] for k in names]).float())
        means = {
            name: float(v) / n_batches / self.dist.world_size for name, v in zip(names, summed, strict=True)
        }
        if not math.isfinite(means["loss"]):
            raise TrainError(f"training loss became {means['loss']} at epoch {epoch} (try a smaller lr)")
        return means

    def _share(self, batch: Batch, epoch: int, index: int) -> tuple[Batch, float]:
        """This rank's rows of ``batch`` and their share of it (the whole batch and 1 in one process). The
        rows' loss draws from a generator of their own, seeded by (seed, epoch, batch, rank), so the shared
        generator stays the same on every rank whatever the model draws for its rows."""
        if not self.dist.enabled:
            return batch, 1.0
        rows = self.dist.shard(len(batch.users))
        seed = np.random.SeedSequence([self.config["seed"], epoch, index, self.dist.rank]).generate_state(1)
        rng = torch.Generator(device=self.device).manual_seed(int(seed[0]))
        share = Batch(batch.users[rows], batch.pos_items[rows], batch.neg_items[rows], rng)
        return share, len(share.users) / len(batch.users)

    def fit(self) -> FitResult:
        """Train until ``epochs``, early stopping or the time budget, from the epoch after the last one done
        (a restored trainer continues); keeps (and saves) the best validation state."""
        cfg = self.config
        result = self.result
        budget = cfg["max_minutes"] * 60 or math.inf
        fit_start = time.perf_counter() - self.elapsed
        self.deadline = fit_start + budget
        first = result.epochs_run + 1
        bar = progress_bar(
            range(first, cfg["epochs"] + 1) if not self.finished else range(0),
            desc=cfg["model"],
            unit="ep",
            initial=first - 1,
            total=cfg["epochs"],
            disable=None if self.progress else True,
        )
        for epoch in bar:
            start = time.perf_counter()
            losses = self.train_epoch(epoch)
            done, total = self.batches
            result.train_seconds.append(time.perf_counter() - start)
            result.epochs_run = epoch
            row: dict[str, Any] = {"epoch": epoch, **losses, "lr": self.scheduler.get_last_lr()[0]}
            row["train_seconds"] = round(result.train_seconds[-1], 4)
            if done < total:
                row["batches_done"], row["batches"] = done, total
                log.info("time budget spent after batch %d of %d in epoch %d", done, total, epoch)
            (out_of_time,) = self.dist.agree(time.perf_counter() >= self.deadline)
            if epoch % cfg["eval_every"] == 0 or epoch == cfg["epochs"] or out_of_time:
                self._validate(epoch, row, losses, bar)
                # a budget spent by this validation ends the run here, not after one batch of the next epoch
                (out_of_time,) = self.dist.agree(time.perf_counter() >= self.deadline)
            if self.bad_evals > cfg["patience"]:
                result.stopped_early, result.stop_reason = True, "patience"
            elif out_of_time and (epoch < cfg["epochs"] or done < total):
                result.stop_reason = "time"
            self.finished = result.stop_reason != "epochs" or epoch == cfg["epochs"]
            if self.run is not None:  # last.pt first: a metrics.csv row means its epoch can be resumed
                self.elapsed = time.perf_counter() - fit_start
                self.run.save_last(self.resume_state(row))
                self.run.log_epoch(row)
            if result.stopped_early:
                log.info("early stop at epoch %d: %d evaluations without improvement", epoch, self.bad_evals)
                break
            if result.stop_reason == "time":
                log.info("time budget of %g min spent in epoch %d", cfg["max_minutes"], epoch)
                break
        bar.close()
        self.finished = True
        result.best_epoch, result.best_val = self.best_epoch, self.best_val
        return result

    def _validate(self, epoch: int, row: dict[str, Any], losses: dict[str, float], bar: Any) -> None:
        """Evaluate val, add it to ``row``, update the early-stopping state and the best checkpoint."""
        metric = self.config["valid_metric"]
        start = time.perf_counter()
        val = self.evaluator.evaluate(self.model, "val")
        self.result.eval_seconds.append(time.perf_counter() - start)
        row["eval_seconds"] = round(self.result.eval_seconds[-1], 4)
        row.update({f"val_{k}": v for k, v in val.items() if k != "n_users"})
        (improved,) = self.dist.agree(val[metric] > self.best_value)  # decided once, on rank 0
        if improved:
            self.best_value, self.best_epoch, self.best_val, self.bad_evals = val[metric], epoch, val, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
            if self.run is not None:
                self.run.save_checkpoint(self.checkpoint(epoch, val))
        else:
            self.bad_evals += 1
        log.info(
            "epoch %d loss %.5f val %s %.5f%s (%.1fs train, %.1fs eval)",
            epoch,
            losses["loss"],
            metric,
            val[metric],
            " *" if improved else "",
            self.result.train_seconds[-1],
            self.result.eval_seconds[-1],
        )
        bar.set_postfix(loss=f"{losses['loss']:.4f}", val=f"{val[metric]:.4f}", best=self.best_epoch)

    def _model_optimizers(self) -> list[tuple[str, torch.optim.Optimizer]]:
        """The optimizers a model owns for its auxiliary parts (MMSSL's discriminator, MDMNS's denoisers)."""
        found = [(k, v) for k, v in vars(self.model).items() if isinstance(v, torch.optim.Optimizer)]
        return sorted(found, key=lambda kv: kv[0])

    def resume_state(self, row: dict[str, Any] | None = None) -> dict[str, Any]:
        """Everything needed to continue after the last finished epoch exactly as if never stopped
        (``last.pt``; plain types and tensors only, so it loads with ``weights_only=True``). ``row`` is that
        epoch's metrics row when it is not yet in the run's rows."""
        np_state = np.random.get_state()
        return {
            "format": RESUME_FORMAT,
            "device_type": self.device.type,
            "config": self.config,
            "epoch": self.result.epochs_run,
            "finished": self.finished,
            "model": self.model.state_dict(),
            "best_state": self.best_state,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "model_optimizers": {name: opt.state_dict() for name, opt in self._model_optimizers()},
            "rng": {
                "python": random.getstate(),
                "numpy": [np_state[0], np_state[1].tolist(), *(float(x) for x in np_state[2:])],
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                "generator": self.generator.get_state(),
            },
            "early_stopping": {
                "best_value": self.best_value,
                "best_epoch": self.best_epoch,
                "best_val": self.best_val,
                "bad_evals": self.bad_evals,
            },
            "result": asdict(self.result),
            "rows": [*(self.run.rows if self.run is not None else []), *([row] if row else [])],
            "elapsed_seconds": self.elapsed,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Put this freshly built trainer (same config, same data) back where :meth:`resume_state` was taken."""
        if state.get("format") != RESUME_FORMAT:
            raise TrainError(
                f"last.pt has layout {state.get('format')!r}; this mmtrain reads {RESUME_FORMAT}"
            )
        if state["device_type"] != self.device.type:  # random states of one device type do not fit another
            raise TrainError(
                f"last.pt was written on {state['device_type']}; resume on {state['device_type']}, not on "
                f"{self.device.type}"
            )
        self.model.load_state_dict(state["model"])
        self.best_state = state["best_state"]
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        owned = dict(self._model_optimizers())
        if sorted(owned) != sorted(state["model_optimizers"]):
            raise TrainError("last.pt was written by a model with other auxiliary optimizers")
        for name, opt_state in state["model_optimizers"].items():
            owned[name].load_state_dict(opt_state)
        rng = state["rng"]
        random.setstate(rng["python"])
        name, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), int(pos), int(has_gauss), cached))
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.generator.set_state(rng["generator"])
        stopping = state["early_stopping"]
        self.best_value, self.best_epoch = stopping["best_value"], stopping["best_epoch"]
        self.best_val, self.bad_evals = stopping["best_val"], stopping["bad_evals"]
        self.result = FitResult(**state["result"])
        self.finished = state["finished"]
        self.elapsed = state["elapsed_seconds"]
        if self.run is not None:
            self.run.restore_rows(state["rows"])

    def checkpoint(self, epoch: int, val: dict[str, float]) -> dict[str, Any]:
        """A self-describing checkpoint: enough to rebuild the model on the same dataset (``mmtrain eval``)."""
        return {
            "model": self.config["model"],
            "config": self.config,
            "epoch": epoch,
            "val": val,
            "dataset": str(self.data.root.resolve()),
            "dataset_manifest_sha256": self.data.manifest_sha256(),
            "dataset_content_sha256": self.data.content_sha256(),
            "state_dict": self.model.state_dict(),
        }

    def test(self) -> dict[str, float]:
        """Load the best validation state and evaluate the test split (once)."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return self.evaluator.evaluate(self.model, "test")
