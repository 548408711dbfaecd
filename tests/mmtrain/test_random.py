"""One random source: the trainer's seeded generator drives the sampler and every draw a model makes, so a seed
fixes a run, and no model reads or advances torch's global generator while it trains."""

from __future__ import annotations

import pytest
import torch

from mmtrain.experiment import build_model, make_config, prepare
from mmtrain.models import available
from mmtrain.trainer import Trainer
from tests.mmtrain.helpers import random_dataset

FAST = [("device", "cpu"), ("threads", 1), ("batch_size", 64)]
# keep the large-by-default parts small on 40 items; MICRO draws its contrastive anchors
SMALL = {
    "mdmns": [("embedding_size", 16), ("dims", [8])],
    "mmssl": [("D_max_hidden", 16)],
    "soil": [("knn_k", 5)],
    "micro": [("cl_anchors", 8)],
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return random_dataset(tmp_path_factory.mktemp("data") / "rand", n_users=60, n_items=40, features=True)


def train(root, name: str, seed: int, *sets, disturb: bool = False) -> tuple[list[dict], dict]:
    """Two epochs of ``name``; ``disturb`` reseeds torch's global generator after the model is built."""
    config = make_config(name, sets=[*FAST, *SMALL.get(name, []), ("seed", seed), *sets])
    data = prepare(root, config)
    trainer = Trainer(build_model(data, config), data, config, progress=False)
    if disturb:
        torch.manual_seed(12345)
    losses = [trainer.train_epoch(e) for e in (1, 2)]
    return losses, {k: v.clone() for k, v in trainer.model.state_dict().items()}


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("name", "sets"),
    [
        ("micro", [("knn_k", 5)]),
        ("freedom", [("knn_k", 5)]),
        ("slmrec", [("ssl_task", "FD+FM")]),
    ],
)
def test_one_seed_fixes_the_run_whatever_the_global_generator(root, name, sets):
    losses, state = train(root, name, 5, *sets)
    again, again_state = train(root, name, 5, *sets, disturb=True)
    assert losses == again and same_state(state, again_state)
    other, other_state = train(root, name, 6, *sets)
    assert other != losses and not same_state(state, other_state)


@pytest.mark.parametrize("name", available())
def test_a_training_step_never_touches_the_global_generator(root, name):
    config = make_config(name, sets=[*FAST, *SMALL.get(name, []), ("seed", 1)])
    data = prepare(root, config)
    trainer = Trainer(build_model(data, config), data, config, progress=False)
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    trainer.train_epoch(1)
    assert torch.equal(torch.random.get_rng_state(), before)
