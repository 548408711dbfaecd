"""Resume (``mmtrain run --resume``) and re-running a run from its own config.yaml.

A run killed with SIGKILL mid-training and resumed must end with the same metrics.csv (timing columns aside),
final.json (timing and memory aside), per-user metrics and best.pt as a run that was never stopped.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from mmformat.atomic import write_json, write_lock
from mmformat.manifest import read_manifest, update_manifest
from mmtrain.cli import main
from mmtrain.errors import TrainError
from mmtrain.experiment import make_config, resume_experiment, run_experiment
from mmtrain.models import available
from mmtrain.runs import RunDir
from tests.mmtrain.helpers import random_dataset, tiktok_subset

TIMING = ("train_seconds", "eval_seconds")
FINAL_TIMING = ("seconds_per_epoch", "seconds_per_eval", "peak_memory_mib")
REPO = Path(__file__).resolve().parents[2]


def metrics_rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(encoding="utf-8") as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def final_numbers(run: Path) -> dict:
    final = json.loads((run / "final.json").read_text(encoding="utf-8"))
    return {k: v for k, v in final.items() if k not in FINAL_TIMING}


def assert_same_run(resumed: Path, reference: Path) -> None:
    """Same epochs, losses, val metrics, final metrics, per-user metrics and best weights, bit for bit."""
    assert metrics_rows(resumed) == metrics_rows(reference)
    assert final_numbers(resumed) == final_numbers(reference)
    for split in ("val", "test"):
        name = f"{split}_per_user.parquet"
        pd.testing.assert_frame_equal(pd.read_parquet(resumed / name), pd.read_parquet(reference / name))
    best = [torch.load(r / "best.pt", weights_only=True) for r in (resumed, reference)]
    assert best[0]["epoch"] == best[1]["epoch"]
    for key, value in best[1]["state_dict"].items():
        assert torch.equal(best[0]["state_dict"][key], value), key
    assert not (resumed / "last.pt").exists() and not (reference / "last.pt").exists()


def mmtrain(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmtrain.cli", "-q", *args]


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_kill_9_after_epoch_2_then_resume_matches_an_uninterrupted_run(tmp_path):
    root = tiktok_subset(tmp_path / "tiktok")
    # batches of 256 make an epoch last about two seconds, so the kill lands while epoch 3 trains
    common = [
        "--model",
        "lightgcn",
        "--dataset",
        str(root),
        "--out",
        str(tmp_path / "runs"),
        "--device",
        "cpu",
    ]
    common += ["--set", "threads=1", "--set", "epochs=4", "--set", "batch_size=256", "--seed", "7"]
    env = subprocess_env()
    reference = tmp_path / "runs" / "whole"
    subprocess.run(mmtrain("run", *common, "--name", "whole"), check=True, env=env, capture_output=True)

    killed = tmp_path / "runs" / "killed"
    proc = subprocess.Popen(mmtrain("run", *common, "--name", "killed"), env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (killed / "metrics.csv").is_file() and len(metrics_rows(killed)) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "final.json").exists() and (killed / "last.pt").is_file()
    epochs_done = torch.load(killed / "last.pt", weights_only=True)["epoch"]
    assert 2 <= epochs_done < 4

    resumed = subprocess.run(
        mmtrain("run", "--resume", str(killed)), env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(resumed.stdout)["epochs_run"] == 4
    assert_same_run(killed, reference)
    versions = json.loads((killed / "versions.json").read_text(encoding="utf-8"))
    assert len(versions["resumed_at"]) == 1

    again = subprocess.run(mmtrain("run", "--resume", str(killed)), env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "already finished" in again.stderr
    assert json.loads(again.stdout) == json.loads((killed / "final.json").read_text(encoding="utf-8"))


class Killed(Exception):
    """Stands in for a SIGKILL inside one process: raised right after a chosen epoch's last.pt is written."""


def interrupt_after(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    save_last = RunDir.save_last

    def save_then_die(self: RunDir, state: dict) -> None:
        save_last(self, state)
        if state["epoch"] == epoch:
            raise Killed

    monkeypatch.setattr(RunDir, "save_last", save_then_die)


@pytest.mark.parametrize(
    ("model", "sets"),
    [pytest.param(name, [], id=name) for name in available()]
    + [
        pytest.param(  # the learning-rate scheduler, evaluations every other epoch, the patience counter
            "mf",
            [("lr_decay", 0.5), ("lr_decay_step", 1), ("eval_every", 2), ("patience", 1)],
            id="mf-schedule",
        )
    ],
)
def test_in_process_resume_restores_every_state(tmp_path, monkeypatch, model, sets):
    # every model: its own optimizers (MMSSL, MDMNS), epoch hooks drawing from the generator (FREEDOM, MDMNS),
    # cached graphs (LATTICE, MICRO), dropout and augmentations
    root = random_dataset(tmp_path / "rand", n_users=80, n_items=50, features=True)
    sets = [
        ("device", "cpu"),
        ("threads", 1),
        ("epochs", 4),
        ("batch_size", 128),
        ("tensorboard", False),
        *sets,
    ]
    config = make_config(model, sets=sets)
    reference = run_experiment(root, config, out=tmp_path / "runs", name="whole", progress=False).path
    with monkeypatch.context() as patch:
        interrupt_after(patch, 2)
        with pytest.raises(Killed):
            run_experiment(root, config, out=tmp_path / "runs", name="cut", progress=False)
    cut = tmp_path / "runs" / "cut"
    # "killed" after epoch 2's last.pt, before its metrics.csv row: the resume writes the row back
    assert len(metrics_rows(cut)) == 1 and not (cut / "final.json").exists()
    torch.manual_seed(12345)  # a resumed process starts with other global random states
    result = resume_experiment(cut, progress=False)
    assert result.path == cut and not result.already_finished
    assert_same_run(cut, reference)


@pytest.mark.parametrize(
    ("sets", "killed_after", "epochs_run", "stop_reason"),
    [
        ([("epochs", 3)], 3, 3, "epochs"),  # killed after the last epoch, before final.json
        ([("epochs", 50), ("lr", 1e-30), ("patience", 0)], 2, 2, "patience"),  # killed after early stopping
    ],
)
def test_a_run_killed_after_training_ended_only_tests(
    tmp_path, monkeypatch, sets, killed_after, epochs_run, stop_reason
):
    root = random_dataset(tmp_path / "rand", n_users=40, n_items=30)
    config = make_config("mf", sets=[("device", "cpu"), ("threads", 1), ("max_minutes", 60.0), *sets])
    reference = run_experiment(root, config, out=tmp_path / "runs", name="whole", progress=False).path
    with monkeypatch.context() as patch:
        interrupt_after(patch, killed_after)
        with pytest.raises(Killed):
            run_experiment(root, config, out=tmp_path / "runs", name="cut", progress=False)
    cut = tmp_path / "runs" / "cut"
    state = torch.load(cut / "last.pt", weights_only=True)
    assert state["finished"] is True and 0 < state["elapsed_seconds"] < 3600
    final = resume_experiment(cut, progress=False).final
    assert (final["epochs_run"], final["stop_reason"]) == (epochs_run, stop_reason)
    assert_same_run(cut, reference)


def test_resume_errors_are_one_line(tmp_path):
    root = random_dataset(tmp_path / "rand", n_users=40, n_items=30)
    config = make_config(
        "mf", sets=[("device", "cpu"), ("threads", 1), ("epochs", 3), ("tensorboard", False)]
    )
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as patch:
        interrupt_after(patch, 1)
        with pytest.raises(Killed):
            run_experiment(root, config, out=tmp_path / "runs", name="cut", progress=False)
    cut = tmp_path / "runs" / "cut"

    result = runner.invoke(main, ["-q", "run", "--resume", str(cut), "--set", "lr=0.1", "--config", "x.yaml"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "mmtrain: error: --resume continues a run with its own config; drop --config, --set"
    ]

    text = (cut / "config.yaml").read_text(encoding="utf-8")
    (cut / "config.yaml").write_text(text + "n_layers: 2\n", encoding="utf-8")
    result = runner.invoke(main, ["-q", "run", "--resume", str(cut)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "config.yaml: the run's config no longer resolves" in result.output and "n_layers" in result.output

    (cut / "config.yaml").write_text(text.replace("lr: 0.001", "lr: 0.01"), encoding="utf-8")
    with pytest.raises(TrainError, match="config.yaml differs from the run's last.pt in lr"):
        resume_experiment(cut, progress=False)

    (cut / "config.yaml").write_text(text, encoding="utf-8")
    state = torch.load(cut / "last.pt", weights_only=True)
    torch.save({**state, "device_type": "cuda"}, cut / "last.pt")
    with pytest.raises(TrainError, match="last.pt was written on cuda; resume on cuda, not on cpu"):
        resume_experiment(cut, progress=False)
    torch.save(state, cut / "last.pt")
    with write_lock(cut):  # the run is still being written (by this process, as far as flock can tell)
        with pytest.raises(
            TrainError, match=rf"cut: another process \(pid {os.getpid()}\) is writing this run"
        ):
            resume_experiment(cut, progress=False)
    (cut / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainError, match="last.pt: unreadable resume state"):
        resume_experiment(cut, progress=False)
    (cut / "last.pt").unlink()
    with pytest.raises(TrainError, match="no last.pt: the run stopped before its first epoch ended"):
        resume_experiment(cut, progress=False)
    with pytest.raises(TrainError, match="not a run directory"):
        resume_experiment(tmp_path / "rand", progress=False)


def test_a_runs_config_yaml_reruns_it(tmp_path):
    root = random_dataset(tmp_path / "rand", n_users=60, n_items=40, features=True)
    runner = CliRunner()
    out = tmp_path / "runs"
    first = runner.invoke(
        main,
        ["-q", "run", "--model", "vbpr", "--dataset", str(root), "--out", str(out), "--name", "a"]
        + ["--device", "cpu", "--seed", "4", "--set", "epochs=3", "--set", "batch_size=64"]
        + ["--set", "threads=1", "--set", "reg_weight=0.01", "--set", "tensorboard=false"],
    )
    assert first.exit_code == 0, first.output
    # no --model: the run's config names it; every key (seed, batch size, reg_weight...) comes from the file
    again = runner.invoke(
        main,
        ["-q", "run", "--config", str(out / "a" / "config.yaml"), "--dataset", str(root)]
        + ["--out", str(out), "--name", "b"],
    )
    assert again.exit_code == 0, again.output
    assert (out / "b" / "config.yaml").read_text() == (out / "a" / "config.yaml").read_text()
    assert metrics_rows(out / "b") == metrics_rows(out / "a")
    assert final_numbers(out / "b") == final_numbers(out / "a")
    # a --set on top of a run's config still wins, and a run config for another model is refused
    other = runner.invoke(
        main,
        ["-q", "run", "--config", str(out / "a" / "config.yaml"), "--dataset", str(root), "--out", str(out)]
        + ["--name", "c", "--seed", "5"],
    )
    assert other.exit_code == 0 and json.loads(other.stdout)["seed"] == 5
    wrong = runner.invoke(
        main,
        ["-q", "run", "--model", "mf", "--config", str(out / "a" / "config.yaml"), "--dataset", str(root)],
    )
    assert wrong.exit_code == 2 and "recipe is for model 'vbpr', not 'mf'" in wrong.output
    missing = runner.invoke(main, ["-q", "run", "--dataset", str(root)])
    assert missing.exit_code == 2 and "run needs --model" in missing.output


def test_resume_accepts_the_same_data_imported_again_and_refuses_changed_files(tmp_path):
    root = random_dataset(tmp_path / "rand", n_users=40, n_items=30)
    config = make_config(
        "mf", sets=[("device", "cpu"), ("threads", 1), ("epochs", 3), ("tensorboard", False)]
    )
    with pytest.MonkeyPatch.context() as patch:
        interrupt_after(patch, 1)
        with pytest.raises(Killed):
            run_experiment(root, config, out=tmp_path / "runs", name="cut", progress=False)
    cut = tmp_path / "runs" / "cut"
    changed = shutil.copytree(root, tmp_path / "changed")
    manifest = read_manifest(changed)
    split = next(p for p in sorted(changed.rglob("*.parquet")) if "train" in p.name)
    table = pq.read_table(split)
    pq.write_table(table.slice(1), split)  # one training interaction less
    update_manifest(changed, manifest, [split.relative_to(changed).as_posix()])
    with pytest.raises(TrainError, match="is not the one this run started on"):
        resume_experiment(cut, dataset=changed, progress=False)

    again = shutil.copytree(root, tmp_path / "again")
    manifest = read_manifest(again)
    manifest["created_by"] = {**manifest["created_by"], "created_at": "2031-01-01T00:00:00+00:00"}
    write_json(again / "manifest.json", manifest)
    resume_experiment(cut, dataset=again, progress=False)
    assert json.loads((cut / "final.json").read_text())["epochs_run"] == 3
