"""Executors of a suite's trials: serial (in this process) and Ray (one task per trial, local or a cluster).

Both call :func:`mmtrain.suite.run_trial`, which writes straight into the suite directory; with Ray on a
cluster every node must see the suite directory and the datasets at the same paths (a shared filesystem) and
have modalrec installed. Ray is an optional extra (``pip install modalrec[ray]``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from mmformat.atomic import write_json
from mmtrain.errors import TrainError
from mmtrain.suite_trials import TRIAL_JSON, Trial, run_trial, trial_dir

log = logging.getLogger(__name__)

Executor = Callable[..., None]


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def choose_executor(name: str, address: str | None = None) -> Executor:
    """``serial``, ``ray`` or ``auto`` (Ray when it is importable, else serial with one info line); a cluster
    ``address`` needs Ray."""
    if name == "serial":
        if address:
            raise TrainError(f"--address {address}: a cluster needs --executor ray (or auto)")
        return run_serial
    if name not in ("auto", "ray"):
        raise TrainError(f"--executor {name!r}: choose auto, serial or ray")
    if ray_available():
        return run_ray
    if name == "ray" or address:
        option = "--executor ray" if name == "ray" else f"--address {address}"
        raise TrainError(f"{option}: Ray is not installed (pip install modalrec[ray])")
    log.info("Ray is not installed: running the trials one after another (pip install modalrec[ray])")
    return run_serial


def _log_done(record: dict, i: int, n: int, trial: Trial) -> None:
    if record["status"] == "done":
        log.info(
            "trial %d/%d %s done in %.0f s (%s)",
            i,
            n,
            trial.trial_id,
            record["seconds"],
            record["stop_reason"],
        )


def run_serial(
    trials: list[Trial],
    suite_dir: Path,
    address: str | None = None,
    cpus: float = 1,
    gpus: float = 0,
    progress: bool = False,
) -> None:
    """Run the trials in this process, one after another (``address`` and the resources are not used)."""
    for i, trial in enumerate(trials, 1):
        log.info("trial %d/%d %s: %s", i, len(trials), trial.trial_id, trial.label())
        _log_done(run_trial(trial, suite_dir, progress=progress), i, len(trials), trial)


def _remote_trial(trial: Trial, suite_dir: str, gpus: float, cpus: float = 1) -> dict:
    """A Ray task: one trial in a fresh worker process (so its peak RSS and torch state are its own). Without a
    GPU share the trial sees no GPU (set before torch is imported), so ``device: auto`` means the CPU. Torch
    runs ``cpus`` threads (at least one) unless the trial's config sets ``threads``: by default it would take
    every core of the node, and trials side by side would oversubscribe the cores that many times over."""
    if gpus == 0:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    from mmformat.allocator import keep_freed_memory

    keep_freed_memory()  # the worker process runs trials only (mmtrain.cli.console)
    import torch

    torch.set_num_threads(max(1, int(cpus)))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return run_trial(trial, Path(suite_dir), progress=False)


def run_ray(
    trials: list[Trial],
    suite_dir: Path,
    address: str | None = None,
    cpus: float = 1,
    gpus: float = 0,
    progress: bool = False,
) -> None:
    """One Ray task per trial with ``cpus`` CPUs and ``gpus`` GPUs each (0.5: two trials share a GPU).

    ``address`` None starts a local Ray with this machine's CPUs and GPUs; ``auto`` or ``HOST:PORT`` joins a
    running cluster. A task whose worker dies (out of memory, a crash) is recorded as a failed trial.
    """
    import ray

    if cpus <= 0 or gpus < 0:
        raise TrainError(f"--cpus-per-trial {cpus} / --gpus-per-trial {gpus}: need cpus > 0 and gpus >= 0")
    started = not ray.is_initialized()
    if started:
        # without --address a fresh local Ray, as the help says: a bare ray.init() would join a cluster that
        # `ray start` left running on this machine and queue the trials behind its work
        ray.init(
            address=address or "local", include_dashboard=False, log_to_driver=True, configure_logging=False
        )
    try:
        resources = ray.cluster_resources()
        if cpus > resources.get("CPU", 0) or gpus > resources.get("GPU", 0):
            problem = (
                f"a trial asks for {cpus:g} CPU / {gpus:g} GPU but the Ray cluster has "
                f"{resources.get('CPU', 0):g} CPU / {resources.get('GPU', 0):g} GPU"
            )
            if not address:  # a local Ray never grows; a cluster may (autoscaling), so there it is a warning
                raise TrainError(problem)
            log.warning("%s: the trials wait until it grows", problem)
        log.info(
            "Ray: %g CPU / %g GPU, %g CPU and %g GPU per trial, %d trials",
            resources.get("CPU", 0),
            resources.get("GPU", 0),
            cpus,
            gpus,
            len(trials),
        )
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_calls=1, max_retries=0)(_remote_trial)
        pending = {task.remote(t, str(Path(suite_dir).resolve()), gpus, cpus): t for t in trials}
        n, i = len(pending), 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            trial = pending.pop(ready[0])
            i += 1
            try:
                _log_done(ray.get(ready[0]), i, n, trial)
            except Exception as e:  # the worker died: the trial could not record it itself
                error = " ".join(f"ray task failed: {type(e).__name__}: {e}".split())[:2000]
                log.error("trial %s failed: %s", trial.trial_id, error)
                record = trial.record("failed", error=error, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
                write_json(trial_dir(suite_dir, trial) / TRIAL_JSON, record)
    finally:
        if started:
            ray.shutdown()
