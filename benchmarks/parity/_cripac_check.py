"""Checks that separate the model and evaluator of LATTICE and MICRO from their training runs (``--step-check``).

Both take the shimmed copy of the original that :func:`_cripac.prepare` made (its ``codes`` folder) and import
its ``main``, ``Models`` and ``utility`` modules in this process, with their command line set to the TikTok
defaults the parity run uses (their batch size, L2 weight and contrastive weight are read from it). MICRO's code
base is LATTICE's; an :class:`Original` per model names what differs.

- :func:`step_check`: our model and theirs from the same weights (theirs, copied into ours) on the same batch,
  first with each side's own frozen kNN graphs, then with theirs in ours. Each time one step that rebuilds the
  learned graphs (an epoch's first batch) and one that reuses them: forward outputs, loss, gradients; for
  LATTICE also the rows of the learned graph that differ between the sides.
- :func:`evaluator_check`: a trained run of ours (its ``best.pt``) ranked by their evaluator, and its weights
  copied into their model and ranked by theirs: both against our own validation Recall@20 of that checkpoint.

TikTok's audio vectors are nearly parallel (most rows' 10th neighbour has a cosine near 0.99) and some items
share a vector, so in many rows the 10th and 11th cosine differ by float32 rounding only: the two sides' top-k
(dense matrix product there, blockwise here) may pick either neighbour. The check counts those rows
(:func:`tied_rows`).
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

K = 10  # --topk, ours knn_k
NEAR_TIE = 1e-5  # a 10th-11th cosine gap below this: float32 rounding can swap the two neighbours


@dataclass(frozen=True)
class Original:
    """What the checks need to know of one original: its class, its parameters against ours, its loss."""

    model: str  # our registered model; their class in Models.py is its upper-case name
    pairs: dict[str, tuple[str, str | None]]  # their parameter -> (our parameter, modality or None)
    modal_weight: bool  # LATTICE's learned softmax weights over the modalities
    contrastive: bool  # MICRO's loss_ratio * (InfoNCE(image view, fused) + InfoNCE(text view, fused))


_SHARED = {
    "user_embedding.weight": ("user_embedding", None),
    "item_id_embedding.weight": ("item_embedding", None),
    "image_embedding.weight": ("features", "image"),
    "text_embedding.weight": ("features", "audio"),
    "image_trs.weight": ("projections.weight", "image"),
    "image_trs.bias": ("projections.bias", "image"),
    "text_trs.weight": ("projections.weight", "audio"),
    "text_trs.bias": ("projections.bias", "audio"),
}
LATTICE = Original("lattice", _SHARED, modal_weight=True, contrastive=False)
MICRO = Original(
    "micro",
    {
        **_SHARED,
        "query.0.weight": ("query.0.weight", None),
        "query.0.bias": ("query.0.bias", None),
        "query.2.weight": ("query.2.weight", None),
    },
    modal_weight=False,
    contrastive=True,
)


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


def _original(spec: Original) -> SimpleNamespace:
    """Their modules and arguments, their model with their initial weights (seed 123), their U-I adjacency
    (call inside :func:`_inside`)."""
    import main as their_main
    import Models
    import numpy as np
    import torch
    from utility.batch_test import data_generator, test_torch

    torch.manual_seed(123)
    data = data_generator
    model = getattr(Models, spec.model.upper())(
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
        spec=spec,
        args=their_main.args,
        main=their_main,
        model=model,
        data=data,
        test_torch=test_torch,
        adjacency=adjacency,
    )


def _our_tensor(ours: Any, path: str, modality: str | None) -> Any:
    """Our parameter for one of theirs (:attr:`Original.pairs`)."""
    if modality is None:
        return ours.get_parameter(path)
    index = ours.modalities.index(modality)
    if path == "features":
        return ours.features[index]
    return getattr(ours.projections[index], path.split(".")[1])


def _modal_order(ours: Any) -> list[int]:
    """Our modal_weight entries in their order (image, then audio in the text slot)."""
    return [ours.modalities.index("image"), ours.modalities.index("audio")]


def _copy(spec: Original, ours: Any, theirs: Any, to_ours: bool) -> None:
    """Every paired parameter from theirs into ours (``to_ours``) or back."""
    import torch

    with torch.no_grad():
        for name, (path, modality) in spec.pairs.items():
            mine, other = _our_tensor(ours, path, modality), theirs.get_parameter(name)
            (mine if to_ours else other).copy_(other if to_ours else mine)
        if spec.modal_weight:
            order = _modal_order(ours)
            if to_ours:
                ours.modal_weight[order] = theirs.modal_weight
            else:
                theirs.modal_weight.copy_(ours.modal_weight[order])


def _ours(dataset: Path, config: dict[str, Any]) -> tuple[Any, Any]:
    from mmtrain.data.loader import load_data
    from mmtrain.models.registry import get_model

    data = load_data(dataset)
    return data, get_model(config["model"])(data, config)


def gaps(features: Any, k: int = K) -> Any:
    """Per row, the gap between its k-th and (k+1)-th largest cosine similarity."""
    import torch.nn.functional as F

    unit = F.normalize(features, dim=1)
    values = (unit @ unit.T).topk(k + 1, dim=1).values
    return (values[:, k - 1] - values[:, k]).abs()


def tied_rows(features: Any, k: int = K) -> int:
    """Rows whose k-th and (k+1)-th cosine similarity lie within ``NEAR_TIE`` (float32 can swap them)."""
    return int((gaps(features, k) < NEAR_TIE).sum())


def _their_loss(original: SimpleNamespace, batch: Any, rebuild: bool) -> tuple[Any, Any, Any]:
    """Their training loss of one batch, as their Trainer.train computes it, and their user/item outputs."""
    args, model = original.args, original.model
    outputs = model(original.adjacency, build_item_graph=rebuild)
    users, items = outputs[0], outputs[1]
    u, p, n = users[batch.users], items[batch.pos_items], items[batch.neg_items]
    trainer = SimpleNamespace(batch_size=args.batch_size, decay=ast.literal_eval(args.regs)[0])
    mf, emb, reg = original.main.Trainer.bpr_loss(trainer, u, p, n)
    loss = mf + emb + reg
    if original.spec.contrastive:  # outputs: users, items, image view, text view, fused
        views = model.batched_contrastive_loss(outputs[2], outputs[4])
        views = views + model.batched_contrastive_loss(outputs[3], outputs[4])
        loss = loss + args.loss_ratio * views
    return loss, users, items


def _step(original: SimpleNamespace, ours: Any, batch: Any, rebuild: bool) -> dict[str, float]:
    """Loss and gradients of one batch on both sides (``rebuild``: the learned graphs are rebuilt, with grad)."""
    import torch

    spec, theirs = original.spec, original.model
    for p in [*ours.parameters(), *theirs.parameters()]:
        p.grad = None
    their_loss, users, items = _their_loss(original, batch, rebuild)
    their_loss.backward()
    if rebuild:
        ours.on_epoch_start(1, torch.Generator())
    our_loss = ours.loss(batch)["loss"]
    our_loss.backward()
    with torch.no_grad():
        our_users, our_items = ours.forward()
    grads = [
        (_our_tensor(ours, *pair).grad, theirs.get_parameter(name).grad) for name, pair in spec.pairs.items()
    ]
    if spec.modal_weight:
        mine = ours.modal_weight.grad
        grads.append((None if mine is None else mine[_modal_order(ours)], theirs.modal_weight.grad))
    worst = 0.0
    for mine, other in grads:
        if (mine is None) != (other is None):
            raise SystemExit("step check: a parameter has a gradient on one side only")
        if other is not None:
            worst = max(worst, float((mine - other).norm() / other.norm().clamp_min(1e-30)))
    return {
        "loss_ours": float(our_loss.detach()),
        "loss_theirs": float(their_loss.detach()),
        "max_rel_grad_diff": worst,
        "max_abs_item_diff": float((our_items - items.detach()).abs().max()),
        "max_abs_user_diff": float((our_users - users.detach()).abs().max()),
    }


def step_check(
    codes: Path, dataset: Path, config: dict[str, Any], spec: Original, seed: int = 0
) -> dict[str, Any]:
    """Same weights, same batch of their batch size in users (one positive, one negative each): see the module
    doc. ``config`` is our resolved config of the parity row (its ``model`` is ``spec.model``)."""
    import torch

    from mmtrain.data.sampler import BPRSampler

    torch.set_num_threads(1)
    dataset = Path(dataset).resolve()
    with _inside(codes):
        original = _original(spec)
        data, ours = _ours(dataset, config)
        _copy(spec, ours, original.model, to_ours=True)
        ours.train()
        size = original.args.batch_size
        sampler = BPRSampler(data.train, size, torch.Generator().manual_seed(seed), pool="all", mode="users")
        batch = next(sampler.epoch())
        model = original.model
        result: dict[str, Any] = {
            "batch": size,
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
                ours.orig_graphs = [
                    g if g.is_sparse else g.to_sparse() for g in map(frozen.get, ours.modalities)
                ]
            result[f"{graphs}_graphs"] = {
                "rebuild": _step(original, ours, batch, rebuild=True),
                "reuse": _step(original, ours, batch, rebuild=False),
            }
        result["learned_rows"] = _learned_rows(original, ours) if spec is LATTICE else None
    return result


def _learned_rows(original: SimpleNamespace, ours: Any) -> dict[str, dict[str, int]]:
    """Per modality: rows of LATTICE's learned kNN graph whose neighbours differ between the two sides, and how
    many of them are near ties (their 10th-11th cosine gap below ``NEAR_TIE``)."""
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


def evaluator_check(codes: Path, dataset: Path, run: Path, spec: Original) -> dict[str, Any]:
    """Our run's ``best.pt`` ranked on val by their evaluator, as our embeddings and through their forward."""
    import torch

    torch.set_num_threads(1)
    dataset = Path(dataset).resolve()
    state = torch.load(run / "best.pt", weights_only=False)
    _, ours = _ours(dataset, {**state["config"], "model": spec.model})
    ours.load_state_dict(state["state_dict"])
    ours.eval()
    with torch.no_grad():
        users, items = ours.forward()
    with _inside(codes):
        original = _original(spec)
        val_users = list(original.data.val_set.keys())
        ours_theirs = original.test_torch(users, items, val_users, is_val=True)
        _copy(spec, ours, original.model, to_ours=False)
        original.model.eval()
        with torch.no_grad():
            their_users, their_items = original.model(original.adjacency, build_item_graph=True)[:2]
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
            "either side's pick is valid"
        )
        if rows is not None:
            text += (
                "; rows of the learned graphs that differ between the sides (near ties among them): audio "
                f"{rows['audio']['differ']} ({rows['audio']['differ_near_tie']}), image {rows['image']['differ']} "
                f"({rows['image']['differ_near_tie']})"
            )
        text += "."
    if evaluation is not None:
        text += (
            f" Evaluator check: our {evaluation['run']} checkpoint (epoch {evaluation['epoch']}) has val Recall@20 "
            f"{evaluation['val_recall@20_ours']:.5f} under our evaluator, "
            f"{evaluation['val_recall@20_their_evaluator']:.5f} under theirs, and "
            f"{evaluation['val_recall@20_their_forward']:.5f} when its weights go through their model and evaluator."
        )
    return text


def run_checks(
    args: Any, codes: Path, runs: Path, spec: Original, overrides: dict[str, Any]
) -> dict[str, Any] | None:
    """Both checks for a parity row: run with ``--step-check`` (our first seed's run is the checkpoint) and kept
    in ``--work/<model>-checks.json``; without the flag the kept ones, or None when they never ran."""
    import json

    from mmtrain.config import resolve_config
    from mmtrain.models.registry import get_model

    path = args.work / f"{spec.model}-checks.json"
    if path.exists():
        return json.loads(path.read_text())
    if not getattr(args, "step_check", False):
        return None
    config = resolve_config(get_model(spec.model), {"model": spec.model, "params": overrides})
    config["model"] = spec.model
    found = {
        "step": step_check(codes, args.dataset, config, spec),
        "evaluator": evaluator_check(codes, args.dataset, runs / f"{spec.model}-s{args.seeds[0]}", spec),
    }
    path.write_text(json.dumps(found, indent=2))
    return found


def cause(found: dict[str, Any], band: dict[str, Any] | None) -> str:
    """The cause of a *differs* that the checks support: none in the model or evaluator, when one step from the
    same weights and graphs gives their loss (within 1e-5 relative) and their evaluator our checkpoint's
    Recall@20; then whether the two seed bands' late means (``band``, :func:`_harness.seed_band`) differ beyond
    noise (Welch). Empty when the checks disagree."""
    from _harness import welch_sentence

    same = found["step"]["theirs_graphs"]["reuse"]
    evaluation = found["evaluator"]
    if abs(same["loss_ours"] - same["loss_theirs"]) > 1e-5 * abs(same["loss_theirs"]) or (
        abs(evaluation["val_recall@20_ours"] - evaluation["val_recall@20_their_evaluator"]) > 1e-9
    ):
        return ""
    text = (
        "none found in the model, evaluator or batches: one step from the same weights gives their loss and "
        "gradients (step check; only the top-k among near-tied neighbours differs), their evaluator ranks our "
        "checkpoint to our number, and the sampler and learning-rate schedule are the same as theirs"
    )
    seeds = welch_sentence(band)
    return f"{text}; {seeds}" if seeds else text


def row_checks(
    args: Any,
    codes: Path,
    spec: Original,
    overrides: dict[str, Any],
    band: dict[str, Any] | None,
    with_cause: bool = True,
) -> tuple[dict[str, Any], str, str]:
    """A parity row's ``check`` (:func:`_cripac.run_rows`): the checks of ``spec`` (its reference row's runs are
    ``--work/ours/<model>``), their sentence and, ``with_cause``, the cause they support."""
    found = run_checks(args, codes, args.work / "ours" / spec.model, spec, overrides)
    if found is None:
        return {}, "", ""
    why = cause(found, band) if with_cause else ""
    return found, sentence(found["step"], found["evaluator"]), why
