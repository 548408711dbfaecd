"""One experiment end to end: config -> data on a device -> model -> trainer -> test once -> run directory.

The CLI commands (``run``, ``grid``, ``eval``) are thin wrappers around these functions. A run killed while
training continues with :func:`resume_experiment` (``mmtrain run --resume RUN_DIR``) from the ``last.pt``
written after each epoch.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from mmformat.atomic import write_json
from mmtrain.config import (
    CHOICES,
    TRAINER_DEFAULTS,
    check_keys,
    check_value,
    coerce,
    model_ranges,
    read_recipe,
    resolve_config,
    validate,
)
from mmtrain.config import make_config as make_config  # moved to config (torch-free); still importable here
from mmtrain.data.loader import TrainData, load_data, resolve_device
from mmtrain.distributed import LOCAL, DistContext, check_supported
from mmtrain.errors import TrainError
from mmtrain.evaluator import Evaluator, save_per_user
from mmtrain.models import Model, get_model
from mmtrain.runs import CONFIG, FINAL, VERSIONS, RunDir, peak_memory, reset_peak_memory, versions
from mmtrain.trainer import Trainer, seed_everything

log = logging.getLogger(__name__)


def build_model(data: TrainData, config: dict[str, Any]) -> Model:
    """Check the model's requirements against the dataset, then build it on the data's device."""
    cls = get_model(config["model"])
    cls.requirements(config).check(data, cls.name)
    return cls(data, config).to(data.device)


def prepare(dataset: Path, config: dict[str, Any], dist: DistContext = LOCAL) -> TrainData:
    """Seed, set threads, join the process group of a distributed run, and load the dataset's split set onto
    the configured device (rank r of a CUDA run: ``cuda:LOCAL_RANK``). With ``threads`` 0 the ranks of one
    machine share its cores instead of each taking all of them."""
    seed_everything(config["seed"], config["deterministic"])
    if config["threads"] > 0:
        torch.set_num_threads(config["threads"])
    elif dist.enabled:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.local_world_size))
    device = dist.setup(resolve_device(config["device"]))
    return load_data(dataset, config["split"], device)


@dataclass
class RunResult:
    """The outcome of :func:`run_experiment` (``already_finished``: a resume found final.json, nothing ran)."""

    path: Path | None
    final: dict[str, Any]
    already_finished: bool = False


# keys that may differ between a run and its resume without changing its numbers on one device
MACHINE_KEYS = ("device", "threads", "tensorboard")


def run_experiment(
    dataset: Path,
    config: dict[str, Any],
    out: Path | None = None,
    name: str | None = None,
    progress: bool = True,
    resume_dir: Path | None = None,
    dist: DistContext = LOCAL,
) -> RunResult:
    """Train ``config["model"]`` on ``dataset``, select on val, test once; write a run directory under ``out``.

    With ``resume_dir`` (a run directory holding ``last.pt``) the run continues in that directory after its
    last finished epoch instead (see :func:`resume_experiment`, which also reads the config and dataset).
    In a distributed run (``dist``) every rank calls this; rank 0 alone writes the run directory, reads
    ``last.pt`` and sends it to the others, and its final.json adds ``world_size``."""
    check_supported(config, dist.world_size)
    data = prepare(dataset, config, dist)
    reset_peak_memory(data.device)
    model = build_model(data, config)
    run, state = None, None
    if not dist.is_main:
        progress = False
    elif resume_dir is not None:
        run = RunDir(Path(resume_dir), tensorboard=config["tensorboard"])
    elif out is not None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = name or f"{config['model']}-{data.name}-{config['split']}-s{config['seed']}-{stamp}"
        run = RunDir(RunDir.new_path(out, name), tensorboard=config["tensorboard"])
    try:
        if run is not None and resume_dir is not None:
            state = run.load_last()
            _check_resumable(state, config, data, run.path)
            log.info("resuming %s after epoch %d", run.path, state["epoch"])
        elif run is not None:
            run.write_config(config)
            run.write_versions(
                versions(data.device, data.root, data.manifest_sha256(), data.content_sha256())
            )
            log.info("run directory %s", run.path)
        if resume_dir is not None:
            state = dist.broadcast_object(state)
        trainer = Trainer(model, data, config, run, progress=progress, dist=dist)
        if state is not None:
            trainer.restore(state)
            if run is not None:
                _note_resume(run.path)
        fit = trainer.fit()
        test = trainer.test()
        final = {
            "model": config["model"],
            "dataset": data.name,
            "split": config["split"],
            "seed": config["seed"],
            "best_epoch": fit.best_epoch,
            "epochs_run": fit.epochs_run,
            "stopped_early": fit.stopped_early,
            "stop_reason": fit.stop_reason,
            "seconds_per_epoch": fit.seconds_per_epoch,
            "seconds_per_eval": fit.seconds_per_eval,
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "peak_memory_mib": peak_memory(data.device),
            "val": fit.best_val,
            "test": test,
            "graph_source": data.graph_sources,
        }
        if data.split == "cold":  # the other candidate set of the cold protocol, same best state
            other = "cold" if config["cold_candidates"] == "all" else "all"
            evaluator = Evaluator.from_config(data, {**config, "cold_candidates": other}, dist)
            final[f"test_{other}_candidates"] = evaluator.evaluate(model, "test")
        if dist.enabled:
            final["world_size"] = dist.world_size
        if out is not None or resume_dir is not None:  # the same on every rank: per_user is collective
            # before final.json, which marks a run finished
            save_per_user(trainer.evaluator, model, run.path if run is not None else None)
        if run is not None:
            run.write_final(final)
            run.remove_last()
            run.plot(config["valid_metric"])
    finally:
        if run is not None:
            run.close()
    metric = config["valid_metric"]
    log.info(
        "best epoch %d: val %s %.5f, test %s %.5f",
        fit.best_epoch,
        metric,
        fit.best_val.get(metric, float("nan")),
        metric,
        test.get(metric, float("nan")),
    )
    return RunResult(run.path if run else None, final)


def execute(job: dict[str, Any], dist: DistContext = LOCAL) -> RunResult:
    """One ``mmtrain run`` as a plain dict (what the ``--nproc`` launcher sends to each rank): ``resume_dir``
    (and optionally ``dataset``) continues a run, else ``dataset``, ``config``, ``out`` and ``name`` start
    one; ``progress`` shows bars on rank 0."""
    progress = bool(job.get("progress", True))
    dataset = Path(job["dataset"]) if job.get("dataset") is not None else None
    if job.get("resume_dir") is not None:
        return resume_experiment(Path(job["resume_dir"]), dataset, progress=progress, dist=dist)
    if dataset is None:
        raise TrainError("run needs --dataset")
    out = Path(job["out"]) if job.get("out") is not None else None
    return run_experiment(dataset, job["config"], out=out, name=job.get("name"), progress=progress, dist=dist)


def same_dataset(recorded: dict[str, Any], data: TrainData) -> bool:
    """Whether ``data`` is the dataset a run or checkpoint ``recorded``: by the content digest when it holds one
    (the same data imported again is the same), else by the manifest's sha256 (older runs); True when it holds
    neither."""
    if "dataset_content_sha256" in recorded:
        return recorded["dataset_content_sha256"] == data.content_sha256()
    return recorded.get("dataset_manifest_sha256") in (None, data.manifest_sha256())


def _check_resumable(state: dict[str, Any], config: dict[str, Any], data: TrainData, run_dir: Path) -> None:
    """Refuse a resume whose config or dataset differs from the one the run started with (one line)."""
    saved = state.get("config", {})
    changed = sorted(k for k in saved if k in config and k not in MACHINE_KEYS and saved[k] != config[k])
    if changed:
        raise TrainError(f"config.yaml differs from the run's last.pt in {', '.join(changed)}", run_dir)
    try:
        started = json.loads((run_dir / VERSIONS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        started = {}
    if not same_dataset(started, data):
        raise TrainError(
            f"dataset {data.root} is not the one this run started on (its files differ)", run_dir
        )


def resume_experiment(
    run_dir: Path, dataset: Path | None = None, progress: bool = True, dist: DistContext = LOCAL
) -> RunResult:
    """Continue the run in ``run_dir`` after its last finished epoch (``last.pt``), on the dataset it started
    on (``versions.json``) unless ``dataset`` is given. A finished run (final.json) is returned as it is.

    On CPU the result is bit-identical to the run never having stopped (timings and memory aside)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise TrainError("not a run directory (no config.yaml)", run_dir)
    if (run_dir / FINAL).is_file():
        try:
            final = json.loads((run_dir / FINAL).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise TrainError(f"unreadable final.json ({e})", run_dir / FINAL) from None
        log.info("run %s already finished (final.json): nothing to resume", run_dir)
        return RunResult(run_dir, final, already_finished=True)
    try:
        recipe = read_recipe(run_dir / CONFIG)
        config = resolve_config(get_model(str(recipe.get("model"))), recipe)
    except TrainError as e:
        raise TrainError(f"the run's config no longer resolves: {e.problem}", run_dir / CONFIG) from None
    if dataset is None:
        try:
            info = json.loads((run_dir / VERSIONS).read_text(encoding="utf-8"))
            dataset = Path(info["dataset"])
        except (OSError, ValueError, KeyError, TypeError):
            raise TrainError("versions.json does not name the dataset; give --dataset", run_dir) from None
    return run_experiment(dataset, config, progress=progress, resume_dir=run_dir, dist=dist)


def _note_resume(run_dir: Path) -> None:
    """Add this resume's time to ``versions.json`` (``resumed_at``): a reader sees the run was interrupted."""
    path = run_dir / VERSIONS
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(info, dict):
        info.setdefault("resumed_at", []).append(datetime.now(timezone.utc).isoformat(timespec="seconds"))
        write_json(path, info)


EVAL_KEYS = (
    "topk",
    "eval_batch_size",
    "mask_val_at_test",
    "legacy_ndcg",
    "cold_candidates",
    "device",
    "threads",
)


def evaluate_checkpoint(
    checkpoint: Path,
    dataset: Path | None = None,
    device: str | None = None,
    sets: list[tuple[str, Any]] | tuple = (),
) -> dict[str, Any]:
    """Rebuild the model of a ``best.pt`` checkpoint and evaluate val and test on ``dataset`` (default: the
    dataset it was trained on). ``sets`` may change the evaluation keys (``EVAL_KEYS``), e.g.
    ``mask_val_at_test=false`` or ``legacy_ndcg=lattice``."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise TrainError("checkpoint not found", checkpoint)
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or foreign file is a user error, not a crash
        raise TrainError(f"not an mmtrain checkpoint ({type(e).__name__})", checkpoint) from None
    if not isinstance(state, dict) or "state_dict" not in state or "config" not in state:
        raise TrainError("not an mmtrain checkpoint (no state_dict/config)", checkpoint)
    saved = dict(state["config"])
    cls = get_model(str(saved.get("model")))
    check_keys(str(checkpoint), list(saved), cls)
    # keys added to mmtrain after the checkpoint was written take their defaults
    config = {"model": cls.name, **TRAINER_DEFAULTS, **cls.defaults, **saved}
    for key, value in sets:
        if key not in EVAL_KEYS:
            raise TrainError(f"--set {key}: eval only accepts {', '.join(EVAL_KEYS)}")
        config[key] = coerce(key, value, TRAINER_DEFAULTS[key])
        check_value(key, config[key], CHOICES)
    if device:
        config["device"] = device
    validate(config, model_ranges(cls))
    data = prepare(Path(dataset or state["dataset"]), config)
    if not same_dataset(state, data):
        log.warning("the dataset's files differ from those the checkpoint was trained on")
    model = build_model(data, config)
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        raise TrainError(
            f"checkpoint does not fit this dataset ({str(e).splitlines()[0]})", checkpoint
        ) from None
    evaluator = Evaluator.from_config(data, config)
    return {
        "model": config["model"],
        "dataset": data.name,
        "epoch": state.get("epoch"),
        "val": evaluator.evaluate(model, "val"),
        "test": evaluator.evaluate(model, "test"),
    }
