"""Every registered model trains on the real TikTok subset (800 items, real image and audio features): three
epochs through the trainer lower its loss, and it scores every item with finite values afterwards.

One case per model with its recipe's values (trimmed where a full-size part would take minutes on one core),
plus the variants that change what is trained: SOIL's two variants, MMSSL's regenerated graphs, MICRO's sampled
contrastive anchors and SLMRec's view tasks.
"""

from __future__ import annotations

import math

import pytest
import torch

from mmtrain.experiment import build_model, make_config, prepare
from mmtrain.models import available
from mmtrain.trainer import Trainer
from tests.mmtrain.helpers import SUBSET_ITEMS, tiktok_subset

# per model: overrides that keep a case to seconds on one core
TRIMMED: dict[str, list[tuple[str, object]]] = {
    # small denoisers; the batch-rows contrastive loss (full-set InfoNCE over 9k users is the slow part)
    "mdmns": [("embedding_size", 16), ("dims", [16]), ("steps", 2), ("cl_method", 0)],
    # a capped discriminator (the reference's is N -> N/4 -> N/8)
    "mmssl": [("D_max_hidden", 32)],
}

VARIANTS: list[tuple[str, list[tuple[str, object]]]] = [
    ("soil", [("variant", "code")]),
    ("mmssl", [("graph_regen", "epoch")]),
    ("micro", [("cl_anchors", 256)]),
    ("slmrec", [("ssl_task", "FD+FM")]),
]

# cases over 10 s on one core (pytest --durations)
SLOW = {
    "mdmns",
    "mmgcn",
    "mmssl",
    "mmssl-graph_regen=epoch",
    "slmrec-ssl_task=FD+FM",
    "soil",
    "soil-variant=code",
}


# per case: what the model built on the subset (9306 users, 800 items, 13,749 training pairs)
STRUCTURE = {
    # FREEDOM keeps 1 - dropout = 20% of the pairs (both directions) in its pruned training graph
    "freedom": lambda m: m.train_adjacency.indices().shape[1] == 2 * int(13749 * 0.2),
    # MMGCN projects image (128-d) to dim_latent 256, audio (128-d) enters raw
    "mmgcn": lambda m: (
        m.projected == ["image"]
        and m.gcns["image"].preference.shape == (9306, 256)
        and m.gcns["audio"].preference.shape == (9306, 128)
    ),
    "mdmns": lambda m: m.top_items.shape == (2, 9306, 1) and bool(m.generated),
    "mmssl": lambda m: m.modal_graph(0).shape == (2, 13749),  # graph_regen none: the training pairs
    "mmssl-graph_regen=epoch": lambda m: m.modal_graph(0).shape == (2, 9306),  # rebuilt: top-1 of every user
    "slmrec": lambda m: m.modalities == ["image", "audio"],  # FAC chain order: id -> image -> audio
}


def cases() -> list:
    """One param per registered model (recipe values) and per variant."""
    out = []
    for name, extra in [(m, []) for m in available()] + VARIANTS:
        label = name + "".join(f"-{k}={v}" for k, v in extra)
        marks = [pytest.mark.slow] if label in SLOW else []
        out.append(pytest.param(name, [*TRIMMED.get(name, []), *extra], label, id=label, marks=marks))
    return out


@pytest.fixture(scope="module")
def subset(tmp_path_factory: pytest.TempPathFactory):
    return tiktok_subset(tmp_path_factory.mktemp("tiktok") / "tiktok800")


def test_every_registered_model_has_a_case():
    assert {p.values[0] for p in cases()} == set(available())


@pytest.mark.parametrize(("name", "sets", "label"), cases())
def test_trains_on_real_tiktok_subset_with_decreasing_loss(subset, name, sets, label):
    config = make_config(name, sets=[("device", "cpu"), ("seed", 1), ("threads", 1), *sets])
    data = prepare(subset, config)
    assert data.n_items == SUBSET_ITEMS and data.modalities() == ["audio", "image"]
    trainer = Trainer(build_model(data, config), data, config, progress=False)
    parts = [trainer.train_epoch(e) for e in range(1, 4)]
    values = [p["loss"] for p in parts]
    assert all(math.isfinite(v) for p in parts for v in p.values()), parts
    assert values[-1] < values[0], values
    assert STRUCTURE.get(label, lambda m: True)(trainer.model)
    with trainer.model.evaluation():
        scores = trainer.model.full_scores(torch.arange(5))
    assert scores.shape == (5, SUBSET_ITEMS) and torch.isfinite(scores).all()
