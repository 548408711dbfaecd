"""What the CRIPAC-DIG parity scripts (LATTICE, MICRO) share: a shimmed copy of the original, its data, its log.

Both originals read the LATTICE json layout from ``../data/<dataset>/`` next to their ``codes/`` folder, hard-code
``image_feat.npy`` and ``text_feat.npy``, evaluate with a ``multiprocessing.Pool`` and print one line per epoch.
:func:`prepare` copies the repository into ``--work``, applies the script's shims (exact string replacements, each
checked to match exactly once) and exports our TikTok split next to it with ``mmprep export --format lattice``;
:func:`parse_log` reads their per-epoch training loss and validation Recall@20 back.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import TIKTOK, Curve
from _patch import Shim, apply_shims, copy_original, describe

DATASET = "tiktok"
THEIR_SEED = 123  # both originals' --seed default: the run every verdict compares with


CUDA = "`.cuda()` removed (CPU)"
# the shims both CRIPAC originals need (MICRO's code base is LATTICE's): the scripts add their own after these
COMMON_SHIMS: list[Shim] = [
    ("codes/main.py", ".float().cuda()", ".float()", f"{CUDA}: the U-I adjacency"),
    ("codes/main.py", "self.model = self.model.cuda()", "self.model = self.model", f"{CUDA}: the model"),
    (
        "codes/Models.py",
        "self.text_original_adj = text_adj.cuda()\n        self.image_original_adj = image_adj.cuda()",
        "self.text_original_adj = text_adj\n        self.image_original_adj = image_adj",
        f"{CUDA}: the two frozen kNN graphs",
    ),
    (
        "codes/main.py",
        "text_feat.npy",
        "audio_feat.npy",
        "TikTok has no text: the audio features (128-d) take the text slot",
    ),
    (
        "codes/utility/batch_test.py",
        "cores = multiprocessing.cpu_count() // 5",
        "cores = max(1, multiprocessing.cpu_count() // 5)",
        "evaluation pool of at least one process (2 CPUs // 5 gives Pool(0), which raises)",
    ),
    (
        "codes/utility/metrics.py",
        "r = np.asfarray(r)[:k]\n    if r.size:",
        "r = np.asarray(r, dtype=float)[:k]\n    if r.size:",
        "NumPy 2.0 removed np.asfarray (dcg_at_k); the evaluator raised with it after the first epoch",
    ),
    (
        "codes/utility/metrics.py",
        "r = np.asfarray(r)[:k]\n    if all_pos_num == 0:",
        "r = np.asarray(r, dtype=float)[:k]\n    if all_pos_num == 0:",
        "the same in recall_at_k",
    ),
]


def arguments(doc: str, epochs: int, work: str, checks: bool = False) -> argparse.Namespace:
    """The common command line: ``--repo PATH [--epochs E] [--seeds 1 2 3] [--work DIR] [--collect]``, plus
    ``--step-check`` for a script with ``checks`` of its own (its ``check`` argument of :func:`run_rows`)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, required=True, help="checkout of the original repository")
    parser.add_argument("--epochs", type=int, default=epochs, help="epochs compared on both sides")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="our seeds")
    parser.add_argument("--work", type=Path, default=Path(work), help="scratch folder outside the repository")
    parser.add_argument("--dataset", type=Path, default=TIKTOK, help="our TikTok import (read only)")
    parser.add_argument(
        "--collect", action="store_true", help="run nothing: write the result from the logs and runs so far"
    )
    parser.add_argument(
        "--only", choices=["theirs", "ours"], help="run one side (reuse the other's log or runs)"
    )
    parser.add_argument("--row", help="run and write only this result row (a model name in the result files)")
    parser.add_argument(
        "--their-seeds",
        type=int,
        nargs="+",
        default=[THEIR_SEED],
        help=f"the original's seeds (--seed), its default {THEIR_SEED} first; each further seed logs to "
        "<repo>-s<seed>.log and the result gets both seed bands",
    )
    if checks:
        parser.add_argument(
            "--step-check",
            action="store_true",
            help="also check the model and evaluator against the original (one training step from the same "
            "weights; our checkpoint under their evaluator); a finished check is kept in --work and reused",
        )
    args = parser.parse_args()
    if args.their_seeds[0] != THEIR_SEED:
        parser.error(f"--their-seeds starts with the original's default seed {THEIR_SEED} (the compared run)")
    return args


def prepare(repo: Path, work: Path, shims: list[Shim], dataset: Path) -> Path:
    """A shimmed copy of ``repo`` under ``work`` with our split exported into its ``data/tiktok``; returns the
    copy's ``codes`` folder (their working directory). An existing copy is replaced."""
    copy = copy_original(repo, work / repo.name, ignore=(".git",))
    apply_shims(copy, shims, count=1)
    data = copy / "data" / DATASET
    subprocess.run(
        ["mmprep", "export", "--format", "lattice", str(dataset), "--out", str(data), "--overwrite"],
        check=True,
    )
    return copy / "codes"


def batches_per_epoch(codes: Path, batch_size: int) -> int:
    """Their ``n_batch = n_train // batch_size + 1`` (their logged loss is the sum over these batches)."""
    train = json.loads((codes.parent / "data" / DATASET / "5-core" / "train.json").read_text())
    return sum(len(items) for items in train.values()) // batch_size + 1


_LINE = re.compile(
    r"Epoch (?P<epoch>\d+) \[(?P<train>[\d.]+)s(?: \+ [\d.]+s)?\]:\s+(?P<kind>train|val)==\[(?P<loss>[-\d.eE+na]+)="
    r"(?:.*?recall=\[[\d.]+, (?P<recall>[\d.]+)\])?"
)


def parse_log(log: Path, n_batch: int) -> Curve:
    """Per epoch: their summed loss divided by ``n_batch`` (our loss is a batch mean), val Recall@20 when that
    epoch was evaluated, and training seconds. Epochs are numbered from 0 in their log."""
    rows: dict[int, dict[str, float]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            match = _LINE.search(line)
            if not match:
                continue
            row = rows.setdefault(int(match["epoch"]), {})
            row.setdefault("loss", float(match["loss"]) / n_batch)
            row.setdefault("seconds", float(match["train"]))
            if match["recall"] is not None:
                row["recall"] = float(match["recall"])
    curve = Curve()
    for epoch in sorted(rows):
        curve.loss.append(rows[epoch]["loss"])
        curve.recall.append(rows[epoch].get("recall"))
        curve.seconds.append(rows[epoch]["seconds"])
    return curve


def theirs_error(log: Path, code: int | None) -> str | None:
    """The last line of their log when their run failed (``None`` when it ran to the end or still runs)."""
    if not code:
        return None
    lines = [line for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    return f"exit {code}: {lines[-1].strip() if lines else 'no output'}"


def _partial(compared: int, planned: int, curves: list[Curve]) -> str:
    """The sentence that says a comparison is shorter than planned (empty when it is not)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    busy = (
        f" Seconds per epoch are wall times, one core per run (machine load {load:.0f} at collection)."
        if load
        else ""
    )
    if compared >= planned and curves:
        return busy
    return busy + (
        f" **Partial, not converged**: {compared} of the {planned} planned epochs were evaluated on both sides "
        f"({len(curves)} of our seeds) when the session's time ran out; the runs go on in the script's --work "
        "folder, and the same script with --collect rewrites this result from them."
    )


@dataclass(frozen=True)
class Row:
    """One parity row: our model with its overrides, compared with the original's single run."""

    name: str
    model: str
    overrides: dict[str, object]
    details: str


def run_rows(
    args: argparse.Namespace,
    original: dict[str, str],
    shims: list[Shim],
    their_args: list[str],
    batch_size: int,
    rows: list[Row],
    hyperparameters: dict[str, str],
    check: Callable[..., tuple[dict[str, Any], str, str]] | None = None,
) -> None:
    """Run theirs (each of ``--their-seeds`` whose log is not complete, unless ``--collect``), then ours per row
    over the seeds, and write one result per row; the verdict compares their default seed, further seeds of
    theirs add the two seed bands (``theirs_seeds``).

    Their logs and our run folders live in ``--work``; a rerun reuses finished logs and runs. With ``--collect``
    the results are written from whatever exists so far (epochs still running are left out).

    ``check(args, codes, our_runs, band)`` (``band``: :func:`seed_band`'s result or None) returns what the
    script's own checks found (stored as ``checks``), their sentence for the details and the cause a *differs*
    verdict gets (empty: none); it is called for every row."""
    from _harness import (
        band_sentence,
        git_commit,
        late_summary,
        run_ours,
        run_theirs,
        seed_band,
        verdict,
        verdict_extent,
        write_result,
    )

    args.work.mkdir(parents=True, exist_ok=True)
    logs = {
        seed: args.work / (f"{args.repo.name}.log" if seed == THEIR_SEED else f"{args.repo.name}-s{seed}.log")
        for seed in args.their_seeds
    }
    log = logs[THEIR_SEED]
    command = ["python", "main.py", "--dataset", DATASET, "--epoch", str(args.epochs), *their_args]
    codes = args.work / args.repo.name / "codes"
    code: int | None = None
    seconds = None
    run_now = not args.collect and args.only != "ours"
    if run_now:
        codes = prepare(args.repo, args.work, shims, args.dataset)
    n_batch = batches_per_epoch(codes, batch_size)
    if run_now:
        for seed, seed_log in logs.items():
            if len(parse_log(seed_log, n_batch).recall) >= args.epochs:
                continue  # this seed has run all its epochs (delete its log to run it again)
            seed_args = [] if seed == THEIR_SEED else ["--seed", str(seed)]
            seed_code, seed_seconds = run_theirs([*command, *seed_args], codes, seed_log)
            if seed == THEIR_SEED:
                code, seconds = seed_code, seed_seconds
    their_seeds = {seed: parse_log(path, n_batch) for seed, path in logs.items()}  # a missing log: no epochs
    theirs = their_seeds[THEIR_SEED]
    if args.only == "theirs":
        return
    for row in rows:
        if args.row and row.name != args.row:
            continue
        out = args.work / "ours" / row.name
        curves, ours_command = run_ours(
            row.model, args.dataset, args.seeds, args.epochs, row.overrides, out, partial=args.collect
        )
        ours_recall = [c.recall for c in curves]
        kind, why = verdict(ours_recall, theirs.recall) if curves else ("differs", "our runs missing")
        error = theirs_error(log, code)
        if not any(v is not None for v in theirs.recall):
            kind, why = (
                "not run",
                error or "no epoch of the original finished within the session (still running)",
            )
        compared = min([len(theirs.recall), *(len(c) for c in ours_recall)])
        if kind == "differs" and curves and compared:
            why += verdict_extent(ours_recall, theirs.recall)
        their_band = seed_band(their_seeds, ours_recall, compared)
        checks, check_text, cause = check(args, codes, out, their_band) if check else ({}, "", "")
        if kind == "differs" and cause:
            why += f"; cause: {cause}"
        seconds_ours = [c.s_per_epoch for c in curves if c.s_per_epoch]
        result = {
            "model": row.name,
            "original": {**original, "commit": git_commit(args.repo)},
            "shims": describe(shims),
            "protocol": {
                "dataset": "tiktok",
                "epochs": compared,
                "epochs_planned": args.epochs,
                "hyperparameters": {**hyperparameters, **{k: str(v) for k, v in row.overrides.items()}},
                "batches": "uniform users per batch (n_train // 1024 + 1 batches), one positive and one "
                "negative from all items per user (theirs: Data.sample; ours: sampler=users, neg_items=all)",
            },
            "ours": {
                "seeds": args.seeds[: len(curves)],
                "val_recall@20": ours_recall,
                "loss": [c.loss for c in curves],
                "s_per_epoch": sum(seconds_ours) / len(seconds_ours) if seconds_ours else None,
                "command": ours_command,
            },
            "theirs": {
                "val_recall@20": theirs.recall,
                "loss": theirs.loss,
                "s_per_epoch": theirs.s_per_epoch,
                "evaluator": "theirs",
                "command": " ".join(command),
                "seconds_total": seconds,
                "error": error,
            },
            "theirs_under_ours": None,
            "theirs_seeds": their_band,
            "checks": checks or None,
            "verdict": kind if kind == "parity" else f"{kind}: {why}",
            "details": f"{row.details} Verdict check: {why}. {late_summary(curves, theirs, compared)}"
            f"{band_sentence(their_band)}{check_text}{_partial(compared, args.epochs, curves)}",
        }
        print(write_result(result))
