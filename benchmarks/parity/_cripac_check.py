"""Checks that separate LATTICE's model and evaluator from its training run (``lattice.py --step-check``).

Both take the shimmed copy of the original that :func:`_cripac.prepare` made (its ``codes`` folder) and import
its ``main``, ``Models`` and ``utility`` modules in this process, with their command line set to the TikTok
defaults the parity run uses:

- :func:`step_check`: our model and theirs from the same weights (theirs, copied into ours) on the same batch,
  first with each side's own frozen kNN graphs, then with theirs in ours. Each time one step that rebuilds the
  learned graph (an epoch's first batch) and one that reuses it: forward outputs, loss, gradients; then the rows
  of the learned graph that differ between the sides.
- :func:`evaluator_check`: a trained run of ours (its ``best.pt``) ranked by their evaluator, and its weights
  copied into their model and ranked by theirs: both against our own validation Recall@20 of that checkpoint.

TikTok's audio vectors are nearly parallel (most rows' 10th neighbour has a cosine near 0.99) and some items
share a vector, so in many rows the 10th and 11th cosine differ by float32 rounding only: the two sides' top-k
(dense matrix product there, blockwise here) may pick either neighbour. The check counts those rows
(:func:`tied_rows`) and how many of the rows that differ are among them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

K = 10  # --topk, ours knn_k
BATCH = 1024  # --batch_size
REG = 1e-5  # --regs [1e-5, ...][0]
NEAR_TIE = 1e-5  # a 10th-11th cosine gap below this: float32 rounding can swap the two neighbours


@contextmanager
def _inside(codes: Path) -> Iterator[None]:
    """Their working directory and command line while their modules are imported and run."""
    cwd, argv = Path.cwd(), sys.argv
    os.chdir(codes)
    sys.argv = ["main.py", "--dataset", "tiktok"]
    sys.path.insert(0, str(codes))
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.argv = argv
        sys.path.remove(str(codes))


def _original(codes: Path) -> SimpleNamespace:
    """Their modules, their model built with their initial weights (seed 123) and their U-I adjacency."""
    import main as their_main
    import numpy as np
    import torch
    from Models import LATTICE
    from utility.batch_test import data_generator, test_torch

    torch.manual_seed(123)
    data = data_generator
    model = LATTICE(
        data.n_users,
        data.n_items,
        64,
        [64, 64],
        [0.1, 0.1],
        np.load("../data/tiktok/image_feat.npy"),
        np.load("../data/tiktok/audio_feat.npy"),
    )
    _, norm_adj, _ = data.get_adj_mat()
    adjacency = their_main.Trainer.sparse_mx_to_torch_sparse_tensor(None, norm_adj).float()
    return SimpleNamespace(
        main=their_main, model=model, data=data, test_torch=test_torch, adjacency=adjacency
    )


# their parameter -> (our parameter path, modality) pairs; the modality picks our per-modality entry
_PAIRS = {
    "user_embedding.weight": ("user_embedding", None),
    "item_id_embedding.weight": ("item_embedding", None),
    "image_embedding.weight": ("features", "image"),
    "text_embedding.weight": ("features", "audio"),
    "image_trs.weight": ("projections.weight", "image"),
    "image_trs.bias": ("projections.bias", "image"),
    "text_trs.weight": ("projections.weight", "audio"),
    "text_trs.bias": ("projections.bias", "audio"),
}


def _our_tensor(ours: Any, path: str, modality: str | None) -> Any:
    """Our parameter for one of theirs (``_PAIRS``)."""
    if modality is None:
        return getattr(ours, path)
    index = ours.modalities.index(modality)
    if path == "features":
        return ours.features[index]
    return getattr(ours.projections[index], path.split(".")[1])


def _their_tensor(theirs: Any, name: str) -> Any:
    module, attr = name.rsplit(".", 1)
    return getattr(getattr(theirs, module), attr)


def _modal_order(ours: Any) -> list[int]:
    """Our modal_weight entries in their order (image, then audio in the text slot)."""
    return [ours.modalities.index("image"), ours.modalities.index("audio")]


def _copy(source: Any, target: Any, to_ours: bool) -> None:
    import torch

    ours, theirs = (target, source) if to_ours else (source, target)
    with torch.no_grad():
        for name, (path, modality) in _PAIRS.items():
            mine, other = _our_tensor(ours, path, modality), _their_tensor(theirs, name)
            (mine if to_ours else other).copy_(other if to_ours else mine)
        order = _modal_order(ours)
        if to_ours:
            ours.modal_weight[order] = theirs.modal_weight
        else:
            theirs.modal_weight.copy_(ours.modal_weight[order])


def _ours(dataset: Path, config: dict[str, Any]) -> tuple[Any, Any]:
    from mmtrain.data.loader import load_data
    from mmtrain.models.registry import get_model

    data = load_data(dataset)
    return data, get_model("lattice")(data, config)


def gaps(features: Any, k: int = K) -> Any:
    """Per row, the gap between its k-th and (k+1)-th largest cosine similarity."""
    import torch.nn.functional as F

    unit = F.normalize(features, dim=1)
    values = (unit @ unit.T).topk(k + 1, dim=1).values
    return (values[:, k - 1] - values[:, k]).abs()


def tied_rows(features: Any, k: int = K) -> int:
    """Rows whose k-th and (k+1)-th cosine similarity lie within ``NEAR_TIE`` (float32 can swap them)."""
    return int((gaps(features, k) < NEAR_TIE).sum())


def _step(original: SimpleNamespace, ours: Any, batch: Any, rebuild: bool) -> dict[str, float]:
    """Loss and gradients of one batch on both sides (``rebuild``: the learned graph is rebuilt, with grad)."""
    import torch

    theirs = original.model
    for p in [*ours.parameters(), *theirs.parameters()]:
        p.grad = None
    users, items = theirs(original.adjacency, build_item_graph=rebuild)
    u, p, n = users[batch.users], items[batch.pos_items], items[batch.neg_items]
    mf, emb, reg = original.main.Trainer.bpr_loss(SimpleNamespace(batch_size=BATCH, decay=REG), u, p, n)
    their_loss = mf + emb + reg
    their_loss.backward()
    if rebuild:
        ours.on_epoch_start(1, torch.Generator())
    our_loss = ours.loss(batch)["loss"]
    our_loss.backward()
    with torch.no_grad():
        our_users, our_items = ours.forward()
    worst = 0.0
    for name, (path, modality) in _PAIRS.items():
        mine, other = _our_tensor(ours, path, modality).grad, _their_tensor(theirs, name).grad
        if (mine is None) != (other is None):
            raise SystemExit(f"step check: {name} has a gradient on one side only")
        if other is not None:
            worst = max(worst, float((mine - other).norm() / other.norm().clamp_min(1e-30)))
    if (ours.modal_weight.grad is None) != (theirs.modal_weight.grad is None):
        raise SystemExit("step check: modal_weight has a gradient on one side only")
    if theirs.modal_weight.grad is not None:
        mine = ours.modal_weight.grad[_modal_order(ours)]
        worst = max(worst, float((mine - theirs.modal_weight.grad).norm() / theirs.modal_weight.grad.norm()))
    return {
        "loss_ours": float(our_loss.detach()),
        "loss_theirs": float(their_loss.detach()),
        "max_rel_grad_diff": worst,
        "max_abs_item_diff": float((our_items - items.detach()).abs().max()),
        "max_abs_user_diff": float((our_users - users.detach()).abs().max()),
    }


def step_check(codes: Path, dataset: Path, config: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Same weights, same batch of ``BATCH`` users (one positive, one negative each): see the module doc."""
    import torch

    from mmtrain.data.sampler import BPRSampler

    torch.set_num_threads(1)
    with _inside(codes):
        original = _original(codes)
    data, ours = _ours(dataset, config)
    _copy(original.model, ours, to_ours=True)
    ours.train()
    sampler = BPRSampler(data.train, BATCH, torch.Generator().manual_seed(seed), pool="all", mode="users")
    batch = next(sampler.epoch())
    model = original.model
    result: dict[str, Any] = {
        "batch": BATCH,
        "tied_rows": {
            "raw image": tied_rows(model.image_embedding.weight.detach()),
            "raw audio": tied_rows(model.text_embedding.weight.detach()),
            "projected image": tied_rows(model.image_trs(model.image_embedding.weight).detach()),
            "projected audio": tied_rows(model.text_trs(model.text_embedding.weight).detach()),
        },
    }
    for graphs in ("own", "theirs"):
        if graphs == "theirs":
            frozen = {"image": model.image_original_adj, "audio": model.text_original_adj}
            ours.orig_graphs = [frozen[m].to_sparse() for m in ours.modalities]
        result[f"{graphs}_graphs"] = {
            "rebuild": _step(original, ours, batch, rebuild=True),
            "reuse": _step(original, ours, batch, rebuild=False),
        }
    result["learned_rows"] = _learned_rows(original, ours)
    return result


def _learned_rows(original: SimpleNamespace, ours: Any) -> dict[str, dict[str, int]]:
    """Per modality: rows of the learned kNN graph whose neighbours differ between the two sides, and how many
    of them are near ties (their 10th-11th cosine gap below ``NEAR_TIE``)."""
    import torch

    model = original.model
    with torch.no_grad():
        model(original.adjacency, build_item_graph=True)
        indices = ours.build_graph()[0]
    found = {}
    for m, theirs, trs, table in (
        ("image", model.image_adj, model.image_trs, model.image_embedding),
        ("audio", model.text_adj, model.text_trs, model.text_embedding),
    ):
        k = ours.modalities.index(m)
        mine = indices[:, k * K : (k + 1) * K].sort(1).values
        other = theirs.topk(K, dim=1).indices.sort(1).values
        differ = ~(mine == other).all(1)
        near = gaps(trs(table.weight).detach()) < NEAR_TIE
        found[m] = {"differ": int(differ.sum()), "differ_near_tie": int((differ & near).sum())}
    return found


def evaluator_check(codes: Path, dataset: Path, run: Path) -> dict[str, Any]:
    """Our run's ``best.pt`` ranked on val by their evaluator, as our embeddings and through their forward."""
    import torch

    torch.set_num_threads(1)
    state = torch.load(run / "best.pt", weights_only=False)
    _, ours = _ours(dataset, dict(state["config"]))
    ours.load_state_dict(state["state_dict"])
    ours.eval()
    with torch.no_grad():
        users, items = ours.forward()
    with _inside(codes):
        original = _original(codes)
        val_users = list(original.data.val_set.keys())
        ours_theirs = original.test_torch(users, items, val_users, is_val=True)
        _copy(ours, original.model, to_ours=False)
        original.model.eval()
        with torch.no_grad():
            their_users, their_items = original.model(original.adjacency, build_item_graph=True)
        theirs_theirs = original.test_torch(their_users, their_items, val_users, is_val=True)
    return {
        "run": run.name,
        "epoch": state["epoch"],
        "val_recall@20_ours": state["val"]["recall@20"],
        "val_recall@20_their_evaluator": float(ours_theirs["recall"][1]),
        "val_recall@20_their_forward": float(theirs_theirs["recall"][1]),
        "max_abs_item_diff": float((their_items - items).abs().max()),
    }


def sentence(step: dict[str, Any] | None, evaluation: dict[str, Any] | None) -> str:
    """The two checks in words, for the result's details."""
    if step is None and evaluation is None:
        return ""
    text = ""
    if step is not None:
        own, same, rows = step["own_graphs"], step["theirs_graphs"], step["learned_rows"]
        tied = step["tied_rows"]
        text += (
            f" Step check (same weights, one batch of {step['batch']} users): with each side's own frozen kNN "
            f"graphs the loss is {own['rebuild']['loss_ours']:.7f} (ours) vs {own['rebuild']['loss_theirs']:.7f}, "
            f"gradients within {own['rebuild']['max_rel_grad_diff']:.1e} relative; with their frozen graphs in ours "
            f"{same['rebuild']['loss_ours']:.7f} vs {same['rebuild']['loss_theirs']:.7f}, gradients within "
            f"{same['rebuild']['max_rel_grad_diff']:.1e} (graph-rebuilding step) and "
            f"{same['reuse']['max_rel_grad_diff']:.1e} (a step that reuses the graph), user embeddings within "
            f"{same['rebuild']['max_abs_user_diff']:.0e}. What remains is top-k among near ties: TikTok's "
            "audio vectors are nearly parallel, so the 10th and 11th cosine of a row can differ by float32 "
            f"rounding only (gap below {NEAR_TIE:g}: {tied['raw audio']} audio and {tied['raw image']} image rows of "
            f"the raw features, {tied['projected audio']} and {tied['projected image']} of the projected ones), and "
            "either side's pick is valid; rows of the learned graphs that differ between the sides (near ties "
            f"among them): audio {rows['audio']['differ']} ({rows['audio']['differ_near_tie']}), image "
            f"{rows['image']['differ']} ({rows['image']['differ_near_tie']})."
        )
    if evaluation is not None:
        text += (
            f" Evaluator check: our {evaluation['run']} checkpoint (epoch {evaluation['epoch']}) has val Recall@20 "
            f"{evaluation['val_recall@20_ours']:.5f} under our evaluator, "
            f"{evaluation['val_recall@20_their_evaluator']:.5f} under theirs, and "
            f"{evaluation['val_recall@20_their_forward']:.5f} when its weights go through their model and evaluator."
        )
    return text
