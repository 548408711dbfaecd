"""mmtrain training: loss goes down on the real data, seeded CPU runs are bit-identical, early stopping, the
per-batch time budget, progress inside an epoch."""

from __future__ import annotations

import csv
import io
import logging
import re
import sys

import pytest
import torch

import mmtrain.trainer as trainer_module
from mmtrain.errors import TrainError
from mmtrain.experiment import build_model, make_config, prepare, run_experiment
from mmtrain.trainer import Trainer
from tests.mmtrain.helpers import random_dataset, tiktok_subset


@pytest.mark.parametrize(
    ("model", "epochs", "sampler"),
    [("mf", 4, "pairs"), ("lightgcn", 3, "pairs"), ("lightgcn", 3, "users"), ("vbpr", 3, "pairs")],
)
def test_loss_decreases_on_real_tiktok(tiktok, model, epochs, sampler):
    config = make_config(model, sets=[("device", "cpu"), ("seed", 1), ("threads", 1), ("sampler", sampler)])
    data = prepare(tiktok, config)
    trainer = Trainer(build_model(data, config), data, config, progress=False)
    assert (
        len(trainer.sampler) == 30 and trainer.sampler.mode == sampler
    )  # 59,541 pairs: 30 batches either way
    parts = [trainer.train_epoch(e) for e in range(1, epochs + 1)]
    assert parts[0]["bpr"] < 0.6932  # BPR starts at log 2 for near-zero scores
    for name in ("loss", "bpr"):
        values = [p[name] for p in parts]
        assert all(b < a for a, b in zip(values, values[1:], strict=False)), (name, values)
    if model == "vbpr":  # VBPR uses every modality the dataset has: TikTok's image and audio
        assert trainer.model.modalities == ["audio", "image"]
        assert trainer.model.item_linear.in_features == 256


@pytest.mark.parametrize("model", ["lightgcn", "vbpr"])
def test_two_cpu_runs_with_one_seed_are_identical(tmp_path, model):
    root = random_dataset(tmp_path / "rand", n_users=120, n_items=60, features=True)
    sets = [
        ("device", "cpu"),
        ("threads", 1),
        ("epochs", 3),
        ("batch_size", 64),
        ("seed", 5),
        ("legacy_ndcg", "lattice"),
    ]
    first = run_experiment(root, make_config(model, sets=sets), progress=False).final
    second = run_experiment(root, make_config(model, sets=sets), progress=False).final
    assert first["test"] == second["test"] and first["val"] == second["val"]
    assert first["best_epoch"] == second["best_epoch"]
    other = run_experiment(root, make_config(model, sets=[*sets, ("seed", 6)]), progress=False).final
    assert other["test"] != first["test"]


def test_early_stopping_and_best_epoch(tmp_path):
    root = random_dataset(tmp_path / "rand", n_users=40, n_items=30)
    # lr = 1e-30 (0 is rejected) moves no float32 weight: the first evaluation is the best, no later one
    # strictly improves it, so training stops
    # after patience + 1 = 3 more evaluations (MMRec's cur_step > stopping_step)
    config = make_config(
        "mf", sets=[("device", "cpu"), ("threads", 1), ("lr", 1e-30), ("patience", 2), ("epochs", 50)]
    )
    final = run_experiment(root, config, progress=False).final
    assert (final["best_epoch"], final["epochs_run"], final["stopped_early"]) == (1, 4, True)
    assert final["stop_reason"] == "patience"
    config = make_config(
        "mf", sets=[("device", "cpu"), ("threads", 1), ("lr", 1e-30), ("eval_every", 3), ("epochs", 7)]
    )
    final = run_experiment(root, config, progress=False).final
    # evaluated at 3, 6 and the last epoch 7
    assert (final["best_epoch"], final["epochs_run"], final["stopped_early"]) == (3, 7, False)
    assert final["stop_reason"] == "epochs"


def test_time_budget_stops_and_validates_the_last_epoch(tmp_path):
    root = random_dataset(tmp_path / "rand", n_users=40, n_items=30)
    sets = [("device", "cpu"), ("threads", 1), ("eval_every", 5), ("epochs", 50)]
    # a budget far below one epoch: the run stops after epoch 1 and validates it although eval_every is 5
    result = run_experiment(root, make_config("mf", sets=[*sets, ("max_minutes", 1e-9)]), progress=False)
    final = result.final
    assert (final["best_epoch"], final["epochs_run"], final["stop_reason"]) == (1, 1, "time")
    assert final["stopped_early"] is False and final["val"]["recall@20"] >= 0
    assert final["peak_memory_mib"]["gpu"] is None and final["peak_memory_mib"]["rss"] > 50  # torch alone
    unlimited = run_experiment(root, make_config("mf", sets=[*sets, ("epochs", 2)]), progress=False).final
    assert (unlimited["epochs_run"], unlimited["stop_reason"]) == (2, "epochs")
    with pytest.raises(TrainError, match="max_minutes=-1.0: must be >= 0"):
        make_config("mf", sets=[("max_minutes", -1)])


def test_config_errors_are_one_line_user_errors():
    with pytest.raises(
        TrainError, match=r"unknown key 'n_layer' for lightgcn \(did you mean 'ui_layers'\?\)"
    ):
        make_config("lightgcn", sets=[("n_layer", 3)])
    with pytest.raises(TrainError, match="lr='fast': expected float"):
        make_config("mf", sets=[("lr", "fast")])
    with pytest.raises(TrainError, match="valid_metric recall@30 needs K=30"):
        make_config("mf", sets=[("valid_metric", "recall@30")])
    with pytest.raises(TrainError, match="unknown model 'nope'"):
        make_config("nope")
    config = make_config("lightgcn", sets=[("reg_weight", "1e-3")])
    assert config["reg_weight"] == 1e-3 and config["ui_layers"] == 2  # recipe value
    assert torch.tensor(config["topk"]).tolist() == [10, 20, 50]


def test_mixed_precision_on_cpu_trains(tmp_path):
    root = random_dataset(tmp_path / "rand", n_users=60, n_items=40)
    sets = [("device", "cpu"), ("threads", 1), ("amp", True), ("batch_size", 32), ("epochs", 2)]
    config = make_config("lightgcn", sets=sets)
    data = prepare(root, config)
    trainer = Trainer(build_model(data, config), data, config, progress=False)
    losses = [trainer.train_epoch(e)["loss"] for e in (1, 2)]
    assert losses[1] < losses[0] < 0.6932


@pytest.mark.slow
def test_torch_compile_matches_eager(tmp_path):
    root = random_dataset(tmp_path / "rand", n_users=50, n_items=30)
    losses = {}
    for compiled in (False, True):
        config = make_config("lightgcn", sets=[("device", "cpu"), ("threads", 1), ("compile", compiled)])
        data = prepare(root, config)
        trainer = Trainer(build_model(data, config), data, config, progress=False)
        losses[compiled] = [trainer.train_epoch(e)["loss"] for e in (1, 2)]
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


@pytest.mark.parametrize(("amp", "dtype"), [(True, torch.bfloat16), (False, torch.float32)])
def test_amp_runs_the_training_step_under_autocast(tmp_path, amp, dtype):
    # a Linear inside the loss is observed: bfloat16 under CPU autocast, float32 without it (so amp=true
    # cannot be silently ignored)
    root = random_dataset(tmp_path / "rand", n_users=40, n_items=30, features=True)
    sets = [("device", "cpu"), ("threads", 1), ("amp", amp), ("batch_size", 64)]
    config = make_config("vbpr", sets=sets)
    data = prepare(root, config)
    trainer = Trainer(build_model(data, config), data, config, progress=False)
    seen = []
    trainer.model.item_linear.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    parts = trainer.train_epoch(1)
    assert seen and set(seen) == {dtype} and parts["loss"] > 0


def test_time_budget_is_checked_every_batch_on_real_tiktok(tmp_path):
    root = tiktok_subset(tmp_path / "tiktok")
    # 13,749 training pairs in batches of 256: 54 batches; a budget below one batch stops epoch 1 after its
    # first batch, which is still validated, tested and marked partial in metrics.csv
    sets = [("device", "cpu"), ("threads", 1), ("batch_size", 256), ("max_minutes", 1e-9), ("eval_every", 5)]
    result = run_experiment(root, make_config("lightgcn", sets=sets), out=tmp_path / "runs", progress=False)
    final = result.final
    assert (final["epochs_run"], final["best_epoch"], final["stop_reason"]) == (1, 1, "time")
    assert final["stopped_early"] is False and final["test"]["recall@20"] >= 0
    rows = list(csv.DictReader((result.path / "metrics.csv").open(encoding="utf-8")))
    assert len(rows) == 1 and (rows[0]["batches_done"], rows[0]["batches"]) == ("1", "54")
    assert float(rows[0]["val_recall@20"]) >= 0 and float(rows[0]["loss"]) > 0
    # with a budget of minutes nothing is cut: no partial marker
    sets = [("device", "cpu"), ("threads", 1), ("batch_size", 256), ("epochs", 1), ("max_minutes", 10.0)]
    whole = run_experiment(root, make_config("lightgcn", sets=sets), out=tmp_path / "runs", progress=False)
    rows = list(csv.DictReader((whole.path / "metrics.csv").open(encoding="utf-8")))
    assert "batches_done" not in rows[0] and whole.final["stop_reason"] == "epochs"


def test_progress_log_lines_inside_an_epoch_without_a_terminal(tmp_path, monkeypatch, caplog):
    root = random_dataset(tmp_path / "rand", n_users=60, n_items=40)
    config = make_config("mf", sets=[("device", "cpu"), ("threads", 1), ("batch_size", 50), ("epochs", 1)])
    data = prepare(root, config)
    trainer = Trainer(build_model(data, config), data, config, progress=True)
    monkeypatch.setattr(trainer_module, "LOG_EVERY_SECONDS", 0.0)  # a line per batch instead of per 30 s
    with caplog.at_level(logging.INFO, logger="mmtrain.trainer"):
        trainer.train_epoch(1)
    lines = [r.getMessage() for r in caplog.records if " batch " in r.getMessage()]
    assert len(trainer.sampler) == 8  # 360 training pairs
    assert [line.split()[3] for line in lines] == [f"{i}/8" for i in range(1, 9)]
    pattern = re.compile(r"epoch 1 batch (\d)/8 loss 0\.[67]\d{4} \d+\.\d{3} s/batch ETA \d+s")
    assert all(pattern.fullmatch(line) for line in lines), lines
    monkeypatch.setattr(trainer_module, "LOG_EVERY_SECONDS", 30.0)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mmtrain.trainer"):
        trainer.train_epoch(2)
    assert not [r for r in caplog.records if " batch " in r.getMessage()]  # a fast epoch logs no line


def test_batch_bar_on_a_terminal(tmp_path, monkeypatch):
    root = random_dataset(tmp_path / "rand", n_users=60, n_items=40)
    config = make_config("mf", sets=[("device", "cpu"), ("threads", 1), ("batch_size", 50), ("epochs", 1)])
    data = prepare(root, config)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    Trainer(build_model(data, config), data, config, progress=True).train_epoch(1)
    assert "epoch 1:" in terminal.getvalue() and "0/8 [" in terminal.getvalue()  # the batch bar
    quiet = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    Trainer(build_model(data, config), data, config, progress=False).train_epoch(1)
    assert quiet.getvalue() == ""
