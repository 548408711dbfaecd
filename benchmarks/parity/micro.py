"""Parity of our MICRO with the original (CRIPAC-DIG/MICRO) on TikTok: two rows from one run of theirs.

    python benchmarks/parity/micro.py --repo ~/src/MICRO [--epochs 6] [--seeds 1 2 3] [--their-seeds 123 1 2]
        [--step-check] [--work DIR]

Copies the original into --work, applies the shims below, exports our TikTok split in its layout, runs it on one
CPU thread with validation every epoch, then runs ours over the seeds twice: with the reference contrastive loss
over all items (``micro``) and with the opt-in ``cl_anchors=1024`` estimate (``micro-anchors``), and writes
benchmarks/results/parity/micro.json and micro-anchors.json (rendered into docs/parity.md by table.py).
--step-check adds the checks of _cripac_check.py to both rows (one step of the reference loss from the same
weights; our seed-1 reference checkpoint under their evaluator); the cause they support goes to the ``micro`` row.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from _cripac import COMMON_SHIMS, Row, arguments, run_rows
from _harness import WORK

SHIMS = [
    *COMMON_SHIMS,
    (
        "codes/utility/norm.py",
        "from torch_scatter import scatter_add",
        "scatter_add = lambda src, index, dim, dim_size: src.new_zeros(dim_size).index_add(0, index, src)",
        "`torch_scatter.scatter_add` (not installed) replaced by the same sum with torch's `index_add`",
    ),
]
HYPERPARAMETERS = {
    "lr": "5e-4 (--lr default) -> lr",
    "batch_size": "1024 (--batch_size default) -> batch_size",
    "lr_decay, lr_decay_step": "LambdaLR 0.96 ** (epoch / 50) -> lr_decay=0.96, lr_decay_step=50",
    "embedding_size": "64 (--embed_size) -> embedding_size; feature projections 64 (embed_size) -> feat_embed_dim",
    "ui_layers": "2 (--weight_size [64,64]) -> ui_layers",
    "item_layers": "1 (--layers) -> item_layers",
    "knn_k": "10 (--topk) -> knn_k",
    "lambda_coeff": "0.9 (--lambda_coeff) -> lambda_coeff",
    "reg_weight": "1e-5 (--regs [1e-5,...][0]) -> reg_weight",
    "cl_weight": "0.03 (--loss_ratio) -> cl_weight",
    "tau": "0.5 (hard-coded) -> tau",
    "validation": "every epoch (--verbose 1; early stopping off: --early_stopping_patience 1000) -> eval_every=1",
    "seed": "theirs 123 (their default), ours 1 2 3",
}
OVERRIDES = {
    "lr": 5e-4,
    "batch_size": 1024,
    "lr_decay": 0.96,
    "lr_decay_step": 50,
    "sampler": "users",
    "neg_items": "all",
    "embedding_size": 64,
    "feat_embed_dim": 64,
    "ui_layers": 2,
    "item_layers": 1,
    "knn_k": 10,
    "lambda_coeff": 0.9,
    "reg_weight": 1e-5,
    "cl_weight": 0.03,
    "tau": 0.5,
}
COMMON = (
    "Both sides train MICRO (LightGCN backbone) on our TikTok split (image + audio features, audio in the text "
    "slot) with the original's default hyperparameters and its batches (uniform users, one positive and one "
    "negative from all items each), validating Recall@20 every epoch, each with its own evaluator; their loss "
    "is their per-epoch sum divided by their batch count."
)
FULL = COMMON + " Ours uses the reference contrastive loss over all items in every batch (`cl_anchors=0`)."
ANCHORS = (
    COMMON
    + " Ours uses the opt-in estimate `cl_anchors=1024` (1,024 uniformly drawn anchor items per batch, each "
    "against all items); theirs is the reference loss over all items (the same run as the `micro` row)."
)


def checks(
    args: argparse.Namespace, codes: Path, runs: Path, band: dict[str, Any] | None
) -> tuple[dict[str, Any], str, str]:
    """The step and evaluator checks of the reference row (run with --step-check, else read from --work), their
    sentence, and the cause for the ``micro`` row (the ``micro-anchors`` row gets the sentence only: the step
    check compares the reference loss, not the anchor estimate)."""
    from _cripac_check import MICRO, row_checks

    return row_checks(
        args, codes, MICRO, {**OVERRIDES, "cl_anchors": 0}, band, with_cause=runs.name == "micro"
    )


def main() -> None:
    args = arguments(__doc__, epochs=6, work=str(WORK / "micro"), checks=True)
    original = {"repo": "CRIPAC-DIG/MICRO", "entry": "codes/main.py"}
    their_args = ["--verbose", "1", "--early_stopping_patience", "1000", "--debug"]
    rows = [
        Row("micro", "micro", {**OVERRIDES, "cl_anchors": 0}, FULL),
        Row("micro-anchors", "micro", {**OVERRIDES, "cl_anchors": 1024}, ANCHORS),
    ]
    run_rows(args, original, SHIMS, their_args, 1024, rows, HYPERPARAMETERS, check=checks)


if __name__ == "__main__":
    main()
