"""Data-parallel training (``mmtrain run --nproc N``, ``torchrun -m mmtrain run``) on the CPU with gloo.

Two ranks against one process on the real TikTok subset, same seed: the same validation Recall@20 at every
epoch (within 1e-3; in practice equal) and the same run-directory files, with ``world_size`` added to
final.json. A killed 2-rank run resumes to the numbers of an uninterrupted one; under torchrun the ranks stop
together when rank 0's time budget runs out; a rank's user error and the refused configurations fail with one
line.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from mmtrain import distributed
from mmtrain.cli import main
from mmtrain.distributed import DistContext
from mmtrain.experiment import build_model, make_config, prepare, run_experiment
from mmtrain.launch import free_port
from mmtrain.trainer import Trainer
from tests.mmtrain.helpers import random_dataset, tiktok_subset

REPO = Path(__file__).resolve().parents[2]
GLIBC = platform.libc_ver()[0] == "glibc"  # where the console script and the ranks keep freed memory
SETS = [("device", "cpu"), ("threads", 1), ("epochs", 3), ("batch_size", 512), ("tensorboard", False)]
TIMING = ("train_seconds", "eval_seconds")


@pytest.fixture(scope="module")
def subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiktok_subset(tmp_path_factory.mktemp("tiktok") / "tiktok800")


def cli_args(model: str, dataset: Path, out: Path, name: str, *extra: str) -> list[str]:
    sets = [a for key, value in SETS for a in ("--set", f"{key}={str(value).lower()}")]
    return [
        "-q",
        "run",
        "--model",
        model,
        "--dataset",
        str(dataset),
        "--out",
        str(out),
        "--name",
        name,
        *sets,
        *extra,
    ]


def metric_column(run: Path, column: str) -> list[float]:
    with (run / "metrics.csv").open(encoding="utf-8") as f:
        return [float(row[column]) for row in csv.DictReader(f)]


def files(run: Path) -> set[str]:
    return {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.mark.slow  # two spawned ranks and a reference run: minutes on the loaded 2-core VM
@pytest.mark.parametrize("model", ["lightgcn", "freedom"])
def test_two_ranks_match_one_process_on_real_tiktok(subset, tmp_path, model):
    one = run_experiment(subset, make_config(model, sets=SETS), out=tmp_path, name="one", progress=False)
    result = CliRunner().invoke(main, cli_args(model, subset, tmp_path, "two", "--nproc", "2"))
    assert result.exit_code == 0, result.stderr
    final = json.loads(result.stdout)
    two = tmp_path / "two"
    assert final["world_size"] == 2 and final == json.loads((two / "final.json").read_text(encoding="utf-8"))
    # validation Recall@20 at every epoch, as the issue asks (the val split of the subset has 62 users)
    single, double = metric_column(one.path, "val_recall@20"), metric_column(two, "val_recall@20")
    assert len(single) == len(double) == 3
    assert max(abs(a - b) for a, b in zip(single, double, strict=True)) <= 1e-3, (single, double)
    # the same training curve: the logged BPR loss is the global batch's, summed in another order
    bpr = metric_column(one.path, "bpr"), metric_column(two, "bpr")
    assert max(abs(a - b) for a, b in zip(*bpr, strict=True)) < 1e-5, bpr
    # the same run directory: files, final.json keys (+ world_size), per-user rows of every evaluated user
    assert files(two) == files(one.path)
    reference = json.loads((one.path / "final.json").read_text(encoding="utf-8"))
    assert set(final) == set(reference) | {"world_size"} and "world_size" not in reference
    assert final["best_epoch"] == reference["best_epoch"]
    assert abs(final["test"]["recall@20"] - reference["test"]["recall@20"]) <= 1e-3
    # the spawned ranks keep the memory they free (mmformat.allocator); the library call leaves it alone
    kept = [json.loads((r / "versions.json").read_text())["keeps_freed_memory"] for r in (two, one.path)]
    assert kept == [GLIBC, False]
    for split in ("val", "test"):
        a, b = (pd.read_parquet(r / f"{split}_per_user.parquet") for r in (one.path, two))
        assert a["user_idx"].tolist() == b["user_idx"].tolist() and list(a.columns) == list(b.columns)
        assert (a["recall@20"] - b["recall@20"]).abs().mean() <= 1e-3


def same(a: object, b: object) -> bool:
    """Nested dicts/lists of tensors and numbers, equal exactly."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(same, a, b))
    return a == b


def _train_rank(rank: int, root: Path, name: str, sets: list, port: int, out: Path) -> None:
    """One of two ranks: two epochs of ``name``, then its weights, model-owned optimiser states and logged
    losses saved to ``out/rank<r>.pt`` for the parent to compare."""
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    context = distributed.from_env()
    try:
        config = make_config(name, sets=[*SETS, ("batch_size", 64), *sets])
        data = prepare(root, config, context)
        trainer = Trainer(build_model(data, config), data, config, progress=False, dist=context)
        losses = [trainer.train_epoch(epoch) for epoch in (1, 2)]
        owned = {key: opt.state_dict()["state"] for key, opt in trainer._model_optimizers()}
        torch.save(
            {"state": trainer.model.state_dict(), "owned": owned, "losses": losses}, out / f"rank{rank}.pt"
        )
    finally:
        distributed.shutdown()


@pytest.mark.slow  # spawned ranks: minutes on the loaded 2-core VM
@pytest.mark.parametrize(
    ("name", "sets"),
    [
        ("mmssl", [("graph_regen", "epoch"), ("D_max_hidden", 16)]),  # own optimiser + epoch regeneration
        ("mdmns", [("embedding_size", 16), ("dims", [8])]),  # own optimisers + random edge dropout hook
        ("micro", [("cl_anchors", 8)]),  # random anchors drawn in the loss
    ],
)
def test_every_rank_holds_the_same_weights_and_model_owned_optimisers(tmp_path, name, sets):
    root = random_dataset(tmp_path / "rand", n_users=60, n_items=40, features=True)
    torch.multiprocessing.spawn(_train_rank, args=(root, name, sets, free_port(), tmp_path), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["losses"] == ranks[1]["losses"] and all(
        math.isfinite(v) for v in ranks[0]["losses"][1].values()
    )
    assert ranks[0]["state"].keys() == ranks[1]["state"].keys()
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key
    assert bool(ranks[0]["owned"]) == (name != "micro") and same(ranks[0]["owned"], ranks[1]["owned"])


def test_shards_cover_every_row_once():
    for n in (0, 1, 5, 512, 13749):
        for world in (1, 2, 3, 8):
            rows = [list(range(n))[DistContext(r, world).shard(n)] for r in range(world)]
            assert sum(rows, []) == list(range(n))
            assert max(map(len, rows)) - min(map(len, rows)) <= 1


@pytest.mark.slow  # spawned ranks: minutes on the loaded 2-core VM
def test_killed_two_rank_run_resumes_to_the_uninterrupted_numbers(subset, tmp_path):
    args = cli_args(
        "lightgcn", subset, tmp_path, "{}", "--nproc", "2", "--set", "epochs=8", "--set", "batch_size=256"
    )
    reference = subprocess.run(
        [sys.executable, "-m", "mmtrain", *[a.format("whole") for a in args]],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert reference.returncode == 0, reference.stderr
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "mmtrain", *[a.format("killed") for a in args]],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill reaches the launcher and both ranks
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if (killed / "metrics.csv").is_file() and len(metric_column(killed, "loss")) >= 2:
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert (killed / "last.pt").is_file() and not (killed / "final.json").exists()
    done = len(metric_column(killed, "loss"))
    assert 2 <= done < 8
    resumed = CliRunner().invoke(main, ["-q", "run", "--resume", str(killed), "--nproc", "2"])
    assert resumed.exit_code == 0, resumed.stderr
    whole = tmp_path / "whole"
    for column in ("loss", "val_recall@20", "val_ndcg@20"):
        assert metric_column(killed, column) == metric_column(whole, column), column
    final = [json.loads((r / "final.json").read_text(encoding="utf-8")) for r in (killed, whole)]
    assert final[0]["test"] == final[1]["test"] and final[0]["world_size"] == 2
    best = [torch.load(r / "best.pt", weights_only=True)["state_dict"] for r in (killed, whole)]
    assert all(torch.equal(best[0][k], v) for k, v in best[1].items())
    assert files(killed) == files(whole)


@pytest.mark.slow  # spawned ranks: minutes on the loaded 2-core VM
def test_torchrun_ranks_stop_together_on_the_time_budget(tmp_path):
    # 360 training pairs in batches of 64: 6 batches; a budget below one batch is spent on rank 0's clock
    # after batch 1, and its flag must stop both ranks there (else one would wait for the other forever)
    root = random_dataset(tmp_path / "rand", n_users=60, n_items=40)
    extra = ("--set", "epochs=3", "--set", "batch_size=64", "--set", "max_minutes=1e-9")
    args = cli_args("mf", root, tmp_path / "runs", "tr", *extra)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "mmtrain", *args]
    done = subprocess.run(
        command, env=subprocess_env(), capture_output=True, text=True, check=False, timeout=900
    )
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout)  # rank 0 alone prints (one JSON document)
    assert final["world_size"] == 2 and (final["epochs_run"], final["stop_reason"]) == (1, "time")
    run = tmp_path / "runs" / "tr"
    assert json.loads((run / "final.json").read_text(encoding="utf-8")) == final
    assert json.loads((run / "versions.json").read_text())["keeps_freed_memory"] is GLIBC  # python -m mmtrain
    with (run / "metrics.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and (rows[0]["batches_done"], rows[0]["batches"]) == ("1", "6")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["tr"]


@pytest.mark.slow  # spawns two ranks (torch imports): minutes on the loaded 2-core VM
def test_a_rank_error_is_one_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmtrain",
            *cli_args("mf", tmp_path / "missing", tmp_path, "x", "--nproc", "2"),
        ],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmtrain: error: ") and "missing" in lines[0], (
        result.stderr
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--nproc", "0"], "--nproc 0: give at least 1 process"),
        (["--nproc", "2", "--backend", "nccl"], "--backend nccl needs CUDA devices; this run is on cpu"),
        (["--nproc", "3", "--set", "batch_size=2"], "batch_size 2 is smaller than the 3 processes"),
        (["--nproc", "2", "--set", "graph_regen=reference"], "mmssl with graph_regen=reference"),
    ],
)
def test_refused_configurations_fail_with_one_line(tmp_path, extra, message):
    model = "mmssl" if "graph_regen=reference" in extra else "mf"
    result = CliRunner().invoke(main, cli_args(model, tmp_path / "data", tmp_path, "x", *extra))
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmtrain: error: ") and message in lines[0], result.stderr


def test_nproc_under_torchrun_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(main, cli_args("mf", tmp_path, tmp_path, "x", "--nproc", "2"))
    assert result.exit_code == 2 and "torchrun already started 2 processes" in result.stderr
