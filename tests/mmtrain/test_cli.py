"""The mmtrain command line: run directories, eval, grid, compare, --legacy-ndcg, cold split, one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from mmprep.split.cold_dataset import add_cold_split
from mmtrain.cli import main
from mmtrain.experiment import evaluate_checkpoint
from tests.mmtrain.helpers import (
    random_dataset,
)

FAST = ["--device", "cpu", "--set", "threads=1", "--set", "batch_size=64", "--set", "tensorboard=false"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = random_dataset(tmp_path_factory.mktemp("data") / "rand", n_users=90, n_items=50, features=True)
    add_cold_split(root, cold_ratio=0.2, seed=123)
    return root


def invoke(*args: str):
    result = CliRunner().invoke(main, ["-q", *args])
    assert result.exit_code == 0, result.output
    return result


def test_run_eval_compare(dataset, tmp_path):
    out = tmp_path / "runs"
    args = ["run", "--model", "lightgcn", "--dataset", str(dataset), "--out", str(out), *FAST]
    result = invoke(
        *args, "--set", "epochs=3", "--set", "tensorboard=true", "--legacy-ndcg", "lattice", "--name", "r1"
    )
    final = json.loads(result.stdout)
    run = out / "r1"
    assert sorted(p.name for p in run.iterdir()) == [
        "best.pt",
        "config.yaml",
        "curve.png",
        "final.json",
        "metrics.csv",
        "tensorboard",
        "test_per_user.parquet",
        "val_per_user.parquet",
        "versions.json",
    ]
    assert json.loads((run / "final.json").read_text()) == final
    assert final["epochs_run"] == 3 and 1 <= final["best_epoch"] <= 3
    assert {"ndcg_lattice@20", "recall@50", "map@10", "hit@20"} <= set(final["test"])
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and all(r["val_recall@20"] for r in rows)
    versions = json.loads((run / "versions.json").read_text())
    assert versions["device"] == "cpu" and len(versions["dataset_manifest_sha256"]) == 64
    assert "legacy_ndcg: lattice" in (run / "config.yaml").read_text()
    assert any((run / "tensorboard").iterdir())
    # eval of the best checkpoint reproduces the test metrics of the run
    evaluated = json.loads(invoke("eval", str(run / "best.pt")).stdout)
    assert evaluated["epoch"] == final["best_epoch"]
    assert evaluated["test"] == pytest.approx(final["test"], abs=1e-12)
    plain = json.loads(invoke("eval", str(run / "best.pt"), "--set", "mask_val_at_test=false").stdout)
    assert plain["val"] == pytest.approx(final["val"], abs=1e-12)
    assert plain["test"]["n_users"] == final["test"]["n_users"]
    # a checkpoint written before a config key existed is evaluated with that key's default
    state = torch.load(run / "best.pt", weights_only=True)
    del state["config"]["cold_candidates"], state["config"]["adj_norm"]
    torch.save(state, tmp_path / "old.pt")
    assert json.loads(invoke("eval", str(tmp_path / "old.pt")).stdout)["test"] == evaluated["test"]
    table = invoke("compare", str(out), "--per-run").stdout
    assert table.splitlines()[0].startswith("| run | model | dataset |") and "| r1 | lightgcn |" in table
    assert "ndcg_lattice@20" in table.splitlines()[0]
    as_csv = invoke("compare", str(run), "--per-run", "--format", "csv", "--metric", "recall@20")
    as_csv = as_csv.stdout.splitlines()
    assert as_csv[0] == "run,model,dataset,split,seed,best_epoch,epochs,val_recall@20,test_recall@20"
    assert float(as_csv[1].split(",")[-1]) == final["test"]["recall@20"]


def test_grid_selects_on_validation(dataset, tmp_path):
    args = ["grid", "--model", "mf", "--dataset", str(dataset), "--out", str(tmp_path), *FAST]
    invoke(*args, "--set", "epochs=2", "--grid", "reg_weight=0,0.01", "--seeds", "1,2")
    (grid_dir,) = tmp_path.iterdir()
    rows = list(csv.DictReader((grid_dir / "results.csv").open()))
    assert [(r["reg_weight"], r["seed"]) for r in rows] == [
        ("0", "1"),
        ("0", "2"),
        ("0.01", "1"),
        ("0.01", "2"),
    ]
    selection = json.loads((grid_dir / "selection.json").read_text())
    means = {
        w: sum(float(r["val_recall@20"]) for r in rows if r["reg_weight"] == w) / 2 for w in ("0", "0.01")
    }
    best = max(means, key=means.get)
    assert str(selection["point"]["reg_weight"]) in (best, str(float(best)))
    assert selection["seeds"] == [1, 2]


def test_cold_split_run_ranks_cold_items(dataset, tmp_path):
    args = [
        "run",
        "--model",
        "mf",
        "--dataset",
        str(dataset),
        "--out",
        str(tmp_path),
        *FAST,
        "--split",
        "cold",
    ]
    final = json.loads(invoke(*args, "--set", "epochs=1", "--set", "cold_candidates=cold").stdout)
    assert final["split"] == "cold"
    cold = json.loads((dataset / "manifest.json").read_text())["splits"]["cold"]
    assert cold["cold_items"] == {"val": 5, "test": 5}
    # 5 candidate items: every list holds all of them, so Recall@10 is 1 for every user
    assert final["test"]["recall@10"] == 1.0 and final["val"]["recall@10"] == 1.0
    # the same best state ranked among all items: what `mmtrain eval best.pt --set cold_candidates=all` gives
    best = next(tmp_path.glob("*/best.pt"))
    all_items = evaluate_checkpoint(best, sets=[("cold_candidates", "all")])["test"]
    assert final["test_all_candidates"] == all_items and all_items["recall@10"] < 1.0
    assert "test_cold_candidates" not in final


def test_missing_feature_is_one_line_error_without_traceback(tmp_path):
    root = random_dataset(tmp_path / "nofeat", n_users=10, n_items=12, per_user=4)
    cmd = [
        sys.executable,
        "-m",
        "mmtrain.cli",
        "-q",
        "run",
        "--model",
        "vbpr",
        "--dataset",
        str(root),
        "--device",
        "cpu",
    ]
    proc = subprocess.run(
        [*cmd, "--out", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        f"mmtrain: error: {root}: model vbpr needs item features (features/<modality>.npy); the dataset has none"
    ]
    assert proc.stdout == ""
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "n_layer=3"],
            "--set: unknown key 'n_layer' for lightgcn (did you mean 'ui_layers'?)",
        ),
        (["--set", "lr"], "bad --set 'lr': expected key=value"),
        (["--split", "cold", "--set", "cold_candidates=cold"], None),
    ],
)
def test_cli_user_errors(dataset, tmp_path, args, message):
    cmd = ["-q", "run", "--model", "lightgcn", "--dataset", str(dataset), "--out", str(tmp_path), *FAST]
    if message is None:  # a dataset without cold splits
        root = random_dataset(tmp_path / "warm-only", n_users=10, n_items=12, per_user=4)
        cmd[5] = str(root)
        message = f"{root}: dataset has no cold splits (run `mmprep cold-start` first)"
    result = CliRunner().invoke(main, [*cmd, *args, "--set", "epochs=1"])
    assert result.exit_code == 2
    assert result.stderr == f"mmtrain: error: {message}\n"


def test_eval_rejects_missing_or_foreign_checkpoints(tmp_path):
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(b"not a checkpoint")
    for path, message in (
        (tmp_path / "none.pt", "checkpoint not found"),
        (foreign, "not an mmtrain checkpoint"),
    ):
        result = CliRunner().invoke(main, ["-q", "eval", str(path)])
        assert result.exit_code == 2
        assert (
            result.stderr.startswith(f"mmtrain: error: {path}: {message}") and result.stderr.count("\n") == 1
        )
