"""Suites: a whole study (datasets x models x grid points x seeds) in one command, that survives a killed driver.

```
SUITE_DIR/
  suite.yaml             the resolved spec (defaults filled in)
  trials/<trial_id>/     one run directory per trial (mmtrain.runs) plus trial.json (model, dataset, point,
                         seed, status done|running|failed, stop_reason, error)
  trials.csv             one row per trial
  selection.json         per model the grid point with the best mean validation metric over its seeds
  leaderboard.md/.json, report.html   written by mmtrain.report when it is installed
```

``trial_id`` is the first 12 hex digits of the sha256 of the trial's fully resolved config and the dataset's
content digest (its files' sha256s, not the manifest's build time), so a trial always maps to the same folder,
also after the dataset is imported again. A trial is finished when its ``final.json``
exists; rerunning a suite skips finished trials. An unfinished trial (killed driver, reboot, preempted node)
continues from its run's ``last.pt`` when it wrote one; a failed one, or one without, restarts from scratch. Test
metrics are recorded but never drive a choice: selection reads validation only.

Modules: ``suite_spec`` (the YAML spec), ``suite_trials`` (trials: ids, status, running one), ``suite_exec``
(serial and Ray executors), ``suite_tables`` (trials.csv, selection.json, report). Importing them does not
import torch; expanding and running trials does.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from mmformat.atomic import write_text
from mmtrain.errors import TrainError
from mmtrain.suite_spec import SuiteSpec, load_suite
from mmtrain.suite_tables import dry_run_table, write_report, write_tables
from mmtrain.suite_trials import TRIALS, Trial, expand_trials, trial_dir, trial_id, trial_status

log = logging.getLogger(__name__)

LOCK = ".suite.lock"

__all__ = [
    "SuiteFailed",
    "SuiteSpec",
    "Trial",
    "expand_trials",
    "load_suite",
    "run_suite",
    "suite_lock",
    "trial_id",
    "trial_status",
]


class SuiteFailed(TrainError):
    """Some trials of a suite failed; the others finished and the suite's tables were written."""


@contextmanager
def suite_lock(suite_dir: Path) -> Iterator[None]:
    """Hold ``SUITE_DIR/.suite.lock`` so that two drivers never run the same suite at once."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform
        yield
        return
    path = Path(suite_dir) / LOCK
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise TrainError(
                f"another `mmtrain suite` is running on this directory (pid {f.read().strip() or '?'})",
                suite_dir,
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def default_out(spec: SuiteSpec) -> Path:
    return Path("suites") / spec.name


def run_suite(
    spec_path: Path | str,
    out_dir: Path | str | None = None,
    resume: bool = True,
    dry_run: bool = False,
    tables_only: bool = False,
    executor: str = "auto",
    address: str | None = None,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
    progress: bool = False,
) -> Path:
    """Run every unfinished trial of the suite at ``spec_path`` into ``out_dir`` (default ``suites/<name>``),
    then write ``trials.csv``, ``selection.json`` and the report; return the suite directory.

    ``resume`` skips finished trials and continues interrupted ones from their ``last.pt`` (``--no-resume``
    reruns all from scratch). ``dry_run`` prints the trials and their status and writes nothing.
    ``tables_only`` runs nothing and writes the tables and the report from the trials finished so far (it takes
    no lock: a driver may be running the others). ``executor``: ``serial`` (in this process, one after
    another), ``ray`` (one Ray task per trial), ``auto`` (Ray when it is installed). Raises
    :class:`SuiteFailed` at the end when a trial failed.
    """
    from mmtrain.suite_exec import choose_executor

    spec = load_suite(spec_path)
    suite_dir = Path(out_dir) if out_dir is not None else default_out(spec)
    trials = expand_trials(spec)
    if dry_run:
        print(dry_run_table(suite_dir, trials), end="")
        return suite_dir
    if tables_only:
        if not (suite_dir / TRIALS).is_dir():
            raise TrainError("no trials directory: the suite has not been run here", suite_dir)
        if not write_tables(spec, trials, suite_dir)["models"]:
            raise TrainError("no trial has finished yet: nothing to tabulate", suite_dir)
        write_report(suite_dir, spec.baseline)
        return suite_dir
    run = choose_executor(executor, address)
    (suite_dir / TRIALS).mkdir(parents=True, exist_ok=True)
    with suite_lock(suite_dir):
        write_text(suite_dir / "suite.yaml", yaml.safe_dump(spec.resolved(), sort_keys=False))
        todo = [t for t in trials if not (resume and trial_status(suite_dir, t) == "done")]
        if not resume:  # start every trial afresh: no resume state of an earlier driver is used
            for t in todo:
                shutil.rmtree(trial_dir(suite_dir, t), ignore_errors=True)
        log.info(
            "suite %s: %d trials, %d finished, %d to run -> %s",
            spec.name,
            len(trials),
            len(trials) - len(todo),
            len(todo),
            suite_dir,
        )
        if todo:
            run(todo, suite_dir, address=address, cpus=cpus_per_trial, gpus=gpus_per_trial, progress=progress)
        if write_tables(spec, trials, suite_dir)["models"]:
            write_report(suite_dir, spec.baseline)
        else:
            log.warning("no trial of %s has finished: no report", spec.name)
    failed = [t.trial_id for t in trials if trial_status(suite_dir, t) == "failed"]
    if failed:
        raise SuiteFailed(
            f"{len(failed)} of {len(trials)} trials failed ({', '.join(failed)}): "
            f"the error is in trials/<id>/trial.json; rerun the suite to retry them",
            suite_dir,
        )
    return suite_dir
