"""Parity of our LATTICE with the original (CRIPAC-DIG/LATTICE) on TikTok.

    python benchmarks/parity/lattice.py --repo ~/src/LATTICE [--epochs 30] [--seeds 1 2 3] [--their-seeds 123 1 2]
        [--step-check] [--work DIR]

Copies the original into --work, applies the shims below, exports our TikTok split in its layout, runs it on one
CPU thread with validation every epoch, runs ours with the same hyperparameters and batches over the seeds, and
writes benchmarks/results/parity/lattice.json (rendered into docs/parity.md by table.py). --step-check adds the
checks of _cripac_check.py (one step from the same weights; our seed-1 checkpoint under their evaluator).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from _cripac import COMMON_SHIMS, Row, arguments, run_rows
from _harness import WORK

SHIMS = COMMON_SHIMS
HYPERPARAMETERS = {
    "lr": "5e-4 (--lr default) -> lr",
    "batch_size": "1024 (--batch_size default) -> batch_size",
    "lr_decay, lr_decay_step": "LambdaLR 0.96 ** (epoch / 50) -> lr_decay=0.96, lr_decay_step=50",
    "embedding_size": "64 (--embed_size) -> embedding_size",
    "feat_embed_dim": "64 (--feat_embed_dim) -> feat_embed_dim",
    "ui_layers": "2 (--weight_size [64,64]) -> ui_layers",
    "item_layers": "1 (--n_layers) -> item_layers",
    "knn_k": "10 (--topk) -> knn_k",
    "lambda_coeff": "0.9 (--lambda_coeff) -> lambda_coeff",
    "reg_weight": "1e-5 (--regs [1e-5,...][0]) -> reg_weight",
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
}
DETAILS = (
    "Both sides train LATTICE (LightGCN backbone) on our TikTok split (image + audio features, audio in the "
    "text slot) with the original's default hyperparameters and its batches (uniform users, one positive and "
    "one negative from all items each), validating Recall@20 every epoch, each with its own evaluator; their "
    "loss is their per-epoch sum divided by their batch count."
)


def checks(
    args: argparse.Namespace, codes: Path, runs: Path, band: dict[str, Any] | None
) -> tuple[dict[str, Any], str, str]:
    """The step and evaluator checks (run with --step-check, else read from --work), their sentence, the cause."""
    from _cripac_check import LATTICE, row_checks

    return row_checks(args, codes, LATTICE, OVERRIDES, band)


def main() -> None:
    args = arguments(__doc__, epochs=30, work=str(WORK / "lattice"), checks=True)
    original = {"repo": "CRIPAC-DIG/LATTICE", "entry": "codes/main.py"}
    their_args = ["--verbose", "1", "--early_stopping_patience", "1000"]
    rows = [Row("lattice", "lattice", OVERRIDES, DETAILS)]
    run_rows(args, original, SHIMS, their_args, 1024, rows, HYPERPARAMETERS, check=checks)


if __name__ == "__main__":
    main()
