"""Config resolution: the shared vocabulary, renamed keys, typos and value ranges fail with one line, before any
data is loaded or a run directory is made."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mmtrain.config import VOCABULARY_RANGES
from mmtrain.errors import TrainError
from mmtrain.experiment import evaluate_checkpoint, make_config
from mmtrain.models import available, get_model
from tests.mmtrain.helpers import random_dataset

# the spellings the vocabulary replaced (embedding size, dropout, contrastive weight and temperature,
# regularisation weight, graph depth); no model may declare one of them
OLD_NAMES = {
    "embed_size",
    "latdim",
    "drop_rate",
    "dropout_rate",
    "cl_rate",
    "cl_loss",
    "cl_loss2",
    "ssl_reg",
    "ssl_alpha",
    "temp",
    "ssl_temp",
    "reg",
    "n_layers",
    "n_ui_layers",
    "n_mm_layers",
    "gnn_layer",
    "d_emb_size",
}


@pytest.mark.parametrize("name", available())
def test_models_speak_the_vocabulary_and_renames_point_into_it(name):
    cls = get_model(name)
    assert not OLD_NAMES & set(cls.defaults), sorted(OLD_NAMES & set(cls.defaults))
    assert all(old not in cls.defaults and new in cls.defaults for old, new in cls.renames.items())
    assert set(cls.renames) <= OLD_NAMES
    config = make_config(name)  # the recipe's values are inside every range
    for key, allowed in {**VOCABULARY_RANGES, **cls.ranges}.items():
        if key in config:
            allowed.check(key, config[key])


@pytest.mark.parametrize(
    ("model", "old", "new"),
    [
        ("lightgcn", "n_layers", "ui_layers"),
        ("lattice", "n_layers", "item_layers"),
        ("mgcn", "cl_loss", "cl_weight"),
        ("soil", "cl_loss2", "cl_weight2"),
        ("slmrec", "temp", "rec_tau"),
        ("slmrec", "ssl_temp", "tau"),
        ("mmssl", "embed_size", "embedding_size"),
        ("mdmns", "d_emb_size", "time_embedding_size"),
    ],
)
def test_old_name_in_set_fails_naming_the_new_one(model, old, new):
    with pytest.raises(TrainError) as err:
        make_config(model, sets=[(old, 2)])
    assert str(err.value) == f"--set: unknown key {old!r} for {model}: renamed to {new!r}"


def test_old_name_in_recipe_params_grid_and_checkpoint(tmp_path):
    recipe = tmp_path / "old.yaml"
    recipe.write_text("model: lightgcn\nparams:\n  n_layers: 3\n", encoding="utf-8")
    with pytest.raises(
        TrainError, match=r"^recipe: unknown key 'n_layers' for lightgcn: renamed to 'ui_layers'$"
    ):
        make_config("lightgcn", recipe)
    recipe.write_text("model: mgcn\ngrid:\n  cl_loss: [0.1, 0.01]\n", encoding="utf-8")
    with pytest.raises(
        TrainError, match=r"^recipe grid: unknown key 'cl_loss' for mgcn: renamed to 'cl_weight'$"
    ):
        make_config("mgcn", recipe)
    # a run made before the rename: its checkpoint's config holds the old key
    checkpoint = tmp_path / "best.pt"
    config = {**make_config("lightgcn"), "n_layers": 2}
    del config["ui_layers"]
    torch.save({"config": config, "state_dict": {}}, checkpoint)
    with pytest.raises(TrainError) as err:
        evaluate_checkpoint(checkpoint)
    assert str(err.value) == f"{checkpoint}: unknown key 'n_layers' for lightgcn: renamed to 'ui_layers'"


def test_typo_gets_did_you_mean():
    with pytest.raises(
        TrainError, match=r"^--set: unknown key 'item_layer' for micro \(did you mean 'item_layers'\?\)$"
    ):
        make_config("micro", sets=[("item_layer", 1)])


@pytest.mark.parametrize(
    ("model", "key", "value", "message"),
    [
        ("mf", "lr", "nan", "lr=nan: must be > 0"),
        ("mf", "lr", "inf", "lr=inf: must be > 0"),
        ("mf", "lr", float("-inf"), "lr=-inf: must be > 0"),
        ("mf", "lr", -1e-3, "lr=-0.001: must be > 0"),
        ("mf", "lr", 0, "lr=0.0: must be > 0"),
        ("mf", "batch_size", 0, "batch_size=0: must be >= 1"),
        ("mf", "epochs", 0, "epochs=0: must be >= 1"),
        ("mf", "weight_decay", -1, "weight_decay=-1.0: must be >= 0"),
        ("vbpr", "dropout", 1.0, "dropout=1.0: must be in [0, 1)"),
        ("micro", "tau", 0.0, "tau=0.0: must be > 0"),
        ("micro", "cl_anchors", -1, "cl_anchors=-1: must be >= 0"),
        ("lightgcn", "ui_layers", -1, "ui_layers=-1: must be >= 0"),
        ("freedom", "knn_k", 0, "knn_k=0: must be >= 1"),
        ("mgcn", "cl_weight", "nan", "cl_weight=nan: must be >= 0"),
        ("mmssl", "head_num", 0, "head_num=0: must be >= 1"),
        ("mmssl", "head_num", 3, "head_num=3 must divide embedding_size=64"),
        ("mdmns", "keepRate", 0.0, "keepRate=0.0: must be in (0, 1]"),
        ("mdmns", "dims", [64, 0], "dims=[64, 0]: must be >= 1"),
        ("mdmns", "sampling_steps", 9, "sampling_steps=9: must be between 0 and steps"),
    ],
)
def test_out_of_range_values_fail_when_the_config_is_resolved(model, key, value, message):
    with pytest.raises(TrainError) as err:
        make_config(model, sets=[(key, value)])
    assert str(err.value) == message


def test_cli_nan_lr_exits_2_with_one_line_and_no_run_directory(tmp_path):
    root = random_dataset(tmp_path / "rand", n_users=10, n_items=12, per_user=4)
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "mmtrain.cli", "-q", "run", "--model", "lightgcn", "--dataset", str(root)]
    proc = subprocess.run(
        [*cmd, "--device", "cpu", "--out", str(out), "--set", "lr=nan"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [
        "mmtrain: error: lr=nan: must be > 0"
    ]
    assert proc.stdout == "" and not out.exists()
