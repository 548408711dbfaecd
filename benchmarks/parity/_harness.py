"""What every parity script shares: running our side over seeds, reading curves, the verdict and the result file.

A parity script (``benchmarks/parity/<original>.py``) runs one original repository (its path is an argument; the
code never enters this project) and our implementation on the same TikTok split with the same hyperparameters,
batches and epochs, and writes ``benchmarks/results/parity/<model>.json`` through :func:`write_result`.
``benchmarks/parity/table.py`` turns those files into ``docs/parity.md``.

Result file (one per model, every key present; ``null`` where a value does not exist)::

    {"model": "mmssl",                     # our registered model name (a variant: "micro-anchors")
     "original": {"repo": "HKUDS/MMSSL", "commit": "<40 hex>", "entry": "MMSSL/main.py"},
     "shims": ["what was changed to run it, one line each"],
     "protocol": {"dataset": "tiktok", "epochs": 20, "hyperparameters": {...}, "batches": "..."},
     "ours": {"seeds": [1, 2, 3], "val_recall@20": [[...per epoch...], ...], "loss": [[...], ...],
              "s_per_epoch": 12.3, "command": "mmtrain run ..."},
     "theirs": {"val_recall@20": [...], "loss": [...], "s_per_epoch": 40.1, "evaluator": "theirs",
                "command": "python main.py ...", "error": null},
     "theirs_under_ours": {"val_recall@20": [...]} or null,   # their embeddings ranked by our evaluator
     "verdict": "parity" | "differs: <cause>" | "not run: <why>",
     "details": "what was compared, what was found, bugs fixed (markdown, a few sentences)",
     "machine": {...}}                       # _common.machine_info()

Some scripts add what only they measure: ``theirs_seeds`` (:func:`seed_band`, when the original ran with more
than one seed), ``step_check`` (MMRec's MMGCN, SLMRec) and ``checks`` (LATTICE and MICRO: ``_cripac_check.py``).
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import REPO, RESULTS, git_commit, machine_info

PARITY_RESULTS = RESULTS / "parity"
TIKTOK = REPO / "out" / "tiktok"  # the README's TikTok import, read only
WORK = REPO.parent / "parity-work"  # scratch copies of the originals and our runs: outside the repository
METRIC = "val_recall@20"
REL_TOL = 0.05


@dataclass
class Curve:
    """Per-epoch training loss and validation Recall@20 of one run (epochs without validation hold None)."""

    loss: list[float | None] = field(default_factory=list)
    recall: list[float | None] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def s_per_epoch(self) -> float | None:
        return sum(self.seconds) / len(self.seconds) if self.seconds else None


def read_metrics_csv(path: Path) -> Curve:
    """The curve of one of our runs from its ``metrics.csv`` (one row per finished epoch)."""
    curve = Curve()
    with path.open() as f:
        for row in csv.DictReader(f):
            curve.loss.append(float(row["loss"]) if row.get("loss") else None)
            curve.recall.append(float(row[METRIC]) if row.get(METRIC) else None)
            curve.seconds.append(float(row.get("train_seconds") or 0.0))
    return curve


def our_args(
    model: str, dataset: Path, epochs: int, overrides: dict[str, Any], extra_args: list[str] | None = None
) -> list[str]:
    """The ``mmtrain`` arguments (without the seed and output folder) of one of our parity runs: exactly
    ``epochs`` epochs, validation every epoch, no early stop, one thread, the LATTICE nDCG, ``overrides``."""
    sets = {"epochs": epochs, "eval_every": 1, "patience": epochs + 1, "threads": 1, "tensorboard": "false"}
    sets.update(overrides)
    args = ["-q", "run", "--model", model, "--dataset", str(dataset), "--device", "cpu"]
    args += ["--legacy-ndcg", "lattice", *(extra_args or [])]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    return args


class DumpedModel:
    """Duck-typed model for our evaluator (``full_scores`` and ``evaluation``) over what an original dumped:
    ``scores(batch)`` gives the score rows of our user indices ``batch``; items outside ``known_items`` (a
    boolean mask, when given) are never recommended."""

    def __init__(self, scores: Callable[[Any], Any], known_items: Any = None):
        self.scores = scores
        self.unknown = None if known_items is None else ~known_items

    @classmethod
    def of_embeddings(cls, users: Any, items: Any, known_items: Any = None) -> DumpedModel:
        """Scores ``users[batch] @ items.T`` from dumped user and item representations."""
        return cls(lambda batch: users[batch] @ items.T, known_items)

    @classmethod
    def of_rows(cls, row_users: Any, rows: Any) -> DumpedModel:
        """Dumped score rows: ``rows[k]`` scores every item for our user ``row_users[k]``."""
        import torch

        position = torch.full((int(row_users.max()) + 1,), -1, dtype=torch.long)
        position[row_users] = torch.arange(len(row_users))
        return cls(lambda batch: rows[position[batch]].clone())

    def full_scores(self, batch: Any) -> Any:
        scores = self.scores(batch)
        if self.unknown is not None:
            scores[:, self.unknown] = float("-inf")
        return scores

    @contextmanager
    def evaluation(self) -> Iterator[None]:
        yield


def run_ours(
    model: str,
    dataset: Path,
    seeds: list[int],
    epochs: int,
    overrides: dict[str, Any],
    out: Path,
    extra_args: list[str] | None = None,
    partial: bool = False,
) -> tuple[list[Curve], str]:
    """Train our ``model`` once per seed for exactly ``epochs`` epochs (validation every epoch, no early stop).

    Returns the curves and the command line (seed shown as ``SEED``) for the result file. A finished run
    directory is reused, so an interrupted parity script restarts where it stopped. ``partial`` starts nothing
    and returns the epochs each seed's run has finished so far (for results of runs still in progress).
    """
    base = ["mmtrain", *our_args(model, dataset, epochs, overrides, extra_args)]
    curves = []
    for seed in seeds:
        name = f"{model}-s{seed}"
        run_dir = out / name
        if partial:
            metrics = run_dir / "metrics.csv"
            curves.append(read_metrics_csv(metrics) if metrics.exists() else Curve())
            continue
        final = run_dir / "final.json"
        if final.exists() and json.loads(final.read_text()).get("epochs_run", 0) < epochs:
            # a shorter earlier run: kept aside under its length, not reused for a longer comparison
            done = json.loads(final.read_text())["epochs_run"]
            run_dir.rename(run_dir.with_name(f"{name}-{done}ep"))
        if not final.exists():
            subprocess.run([*base, "--seed", str(seed), "--out", str(out), "--name", name], check=True)
        curves.append(read_metrics_csv(run_dir / "metrics.csv"))
    command = shlex.join([*base, "--seed", "SEED"])
    return curves, command


def verdict(
    ours: list[list[float | None]], theirs: list[float | None], rel_tol: float = REL_TOL
) -> tuple[str, str]:
    """``("parity", why)`` when at every epoch both sides evaluated, theirs lies inside our seed band
    [min, max] or within ``rel_tol`` relative of our seed mean; else ``("differs", first epoch that does not)``."""
    epochs = [
        e
        for e in range(min(len(theirs), *(len(c) for c in ours)))
        if theirs[e] is not None and all(c[e] is not None for c in ours)
    ]
    if not epochs:
        return "differs", "no epoch evaluated on both sides"
    for e in epochs:
        values = [c[e] for c in ours]
        low, high, mean = min(values), max(values), sum(values) / len(values)
        if not (low <= theirs[e] <= high or abs(theirs[e] - mean) <= rel_tol * abs(mean)):
            return "differs", (
                f"epoch {e + 1}: theirs {theirs[e]:.4f}, ours {mean:.4f} (band {low:.4f}-{high:.4f})"
            )
    return "parity", f"{len(epochs)} epochs inside the seed band or within {rel_tol:.0%}"


def own_seeds_failing(ours: list[list[float | None]]) -> int:
    """How many of our seeds :func:`verdict` calls different from the band of the other seeds (leave one out):
    when our own seeds fail the test, so may theirs by seed noise alone."""
    if len(ours) < 3:
        return 0
    return sum(verdict(ours[:i] + ours[i + 1 :], ours[i])[0] != "parity" for i in range(len(ours)))


def epochs_outside(ours: list[list[float | None]], theirs: list[float | None]) -> list[int]:
    """The epochs (1-based) at which :func:`verdict` finds theirs outside our band and beyond 5% of our mean."""
    n = min([len(theirs), *(len(c) for c in ours)])
    return [
        e + 1 for e in range(n) if verdict([c[e : e + 1] for c in ours], theirs[e : e + 1])[0] != "parity"
    ]


def mean_defined(values: list[float | None]) -> float | None:
    """The mean of the values that are not None (None when there are none)."""
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


LATE = 5  # epochs averaged at the end of the compared curves


def seed_band(
    their_seeds: dict[int, Curve], ours: list[list[float | None]], compared: int
) -> dict[str, Any] | None:
    """Their seeds against ours (our val curves, at MMRec's precision), when the original ran with more than
    one: every seed's curve over the epochs all of theirs and ours reached, each seed's mean over the last
    :data:`LATE` of them, and at how many epochs the two seed bands [min, max] do not overlap."""
    finished = {s: c for s, c in their_seeds.items() if c.recall}
    if len(finished) < 2 or not ours:
        return None
    n = min([compared, *(len(c.recall) for c in finished.values())])
    if n == 0:
        return None
    theirs = {s: c.recall[:n] for s, c in finished.items()}
    mine = [c[:n] for c in ours]
    late = max(0, n - LATE)

    def late_mean(curve: list[float | None]) -> float | None:
        return mean_defined(curve[late:])

    disjoint = [
        e + 1
        for e in range(n)
        if all(c[e] is not None for c in [*theirs.values(), *mine])
        and (
            max(c[e] for c in theirs.values()) < min(c[e] for c in mine)
            or min(c[e] for c in theirs.values()) > max(c[e] for c in mine)
        )
    ]
    mean_curve = [mean_defined([c[e] for c in theirs.values()]) for e in range(n)]
    return {
        "seeds": list(theirs),
        "epochs": n,
        "val_recall@20": list(theirs.values()),
        "loss": [c.loss[:n] for c in finished.values()],
        "mean_val_recall@20": mean_curve,
        "verdict_of_their_mean": verdict(mine, mean_curve)[1],
        "late_epochs": [late + 1, n],
        "late_mean_theirs": [late_mean(c) for c in theirs.values()],
        "late_mean_ours": [late_mean(c) for c in mine],
        "bands_disjoint_at": disjoint,
    }


def late_welch(band: dict[str, Any] | None) -> tuple[float, float] | None:
    """Welch's t and its two-sided p for our seeds' late means against theirs (:func:`seed_band`; None without
    two seeds on each side)."""
    if not band or len(band["late_mean_theirs"]) < 2 or len(band["late_mean_ours"]) < 2:
        return None
    if None in band["late_mean_theirs"] or None in band["late_mean_ours"]:
        return None
    from scipy.stats import ttest_ind

    test = ttest_ind(band["late_mean_ours"], band["late_mean_theirs"], equal_var=False)
    return float(test.statistic), float(test.pvalue)


def late_gap(band: dict[str, Any] | None) -> float | None:
    """The mean of our seeds' late means minus theirs (None without their seeds)."""
    if not band or None in band["late_mean_theirs"] or None in band["late_mean_ours"]:
        return None
    ours, theirs = band["late_mean_ours"], band["late_mean_theirs"]
    return sum(ours) / len(ours) - sum(theirs) / len(theirs)


def welch_sentence(band: dict[str, Any] | None) -> str:
    """Our seeds' late mean against theirs in words, with Welch's test (empty without two seeds a side)."""
    welch, gap = late_welch(band), late_gap(band)
    if not band or welch is None or gap is None:
        return ""
    first, last = band["late_epochs"]
    return (
        f"over epochs {first}-{last} the mean of our seeds is {gap:+.4f} from theirs, which Welch's test does "
        f"{'' if welch[1] < 0.05 else 'not '}separate from seed noise (t = {welch[0]:.2f}, p = {welch[1]:.2f})"
    )


def loss_overlap(theirs: list[list[float]], ours: list[list[float]], epochs: int) -> int:
    """At how many of the first ``epochs`` epochs the training-loss bands [min, max] of the two sides' seeds
    overlap (seeds with fewer epochs left out)."""
    theirs = [c for c in theirs if len(c) >= epochs]
    ours = [c for c in ours if len(c) >= epochs]
    if not theirs or not ours:
        return 0
    return sum(
        min(c[e] for c in theirs) <= max(c[e] for c in ours)
        and max(c[e] for c in theirs) >= min(c[e] for c in ours)
        for e in range(epochs)
    )


def band_sentence(band: dict[str, Any] | None) -> str:
    """The comparison of the two seed bands (:func:`seed_band`) in words."""
    if not band:
        return ""

    def spread(values: list[float | None]) -> str:
        v = [x for x in values if x is not None]
        return f"{min(v):.4f}-{max(v):.4f} (mean {sum(v) / len(v):.4f})"

    first, last = band["late_epochs"]
    return (
        f" Their seeds {', '.join(map(str, band['seeds']))} against our "
        f"{len(band['late_mean_ours'])} over {band['epochs']} epochs: mean of epochs {first}-{last} theirs "
        f"{spread(band['late_mean_theirs'])}, ours {spread(band['late_mean_ours'])}; the two seed bands are "
        f"disjoint at {len(band['bands_disjoint_at'])} of {band['epochs']} epochs; the mean of their seeds "
        f"against our band: {band['verdict_of_their_mean']}."
    )


def late_summary(ours: list[Curve], theirs: Curve, compared: int, late: int = LATE) -> str:
    """One sentence on the end of the compared curves: each side's mean val Recall@20 over the last ``late``
    epochs and the training losses at the last one (empty when fewer epochs were compared)."""
    if compared < late or not ours:
        return ""
    last = slice(compared - late, compared)
    theirs_late = mean_defined(theirs.recall[last])
    ours_late = [mean_defined(c.recall[last]) for c in ours]
    if theirs_late is None or any(v is None for v in ours_late):
        return ""
    losses = [c.loss[compared - 1] for c in ours]
    return (
        f"Over epochs {compared - late + 1}-{compared} theirs averages {theirs_late:.4f}, our seeds "
        f"{', '.join(f'{v:.4f}' for v in ours_late)} (theirs {theirs_late / mean_defined(ours_late) - 1:+.1%} "
        f"against our mean); training loss at epoch {compared}: theirs {theirs.loss[compared - 1]:.4f}, ours "
        f"{min(losses):.4f}-{max(losses):.4f}. One seed of theirs against {len(ours)} of ours."
    )


def verdict_extent(ours: list[list[float | None]], theirs: list[float | None]) -> str:
    """What a *differs* verdict adds: at how many of the compared epochs theirs is outside our band, and how many
    of our own seeds fail the same rule against the other two (seed noise), e.g. " (8 of 30 epochs outside;
    by the same rule 3 of our 3 seeds differ from the other two)"."""
    compared = min([len(theirs), *(len(c) for c in ours)])
    clipped = [c[:compared] for c in ours]
    own = own_seeds_failing(clipped)
    text = f" ({len(epochs_outside(clipped, theirs[:compared]))} of {compared} epochs outside"
    return text + (
        f"; by the same rule {own} of our {len(ours)} seeds differ from the other two)" if own else ")"
    )


def run_theirs(
    command: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None
) -> tuple[int, float]:
    """Run the original code (CPU only, one thread), its stdout+stderr into ``log``; returns (exit code, seconds)."""
    full_env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    full_env["PYTHONUNBUFFERED"] = "1"  # a partial log of a run still going can be read
    full_env.update(env or {})
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as f:
        code = subprocess.run(command, cwd=cwd, env=full_env, stdout=f, stderr=subprocess.STDOUT).returncode
    return code, time.perf_counter() - start


def write_result(result: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/parity/<model>.json`` atomically, with the machine description added."""
    missing = {
        "model",
        "original",
        "shims",
        "protocol",
        "ours",
        "theirs",
        "verdict",
        "details",
    } - result.keys()
    if missing:
        raise ValueError(f"parity result lacks {sorted(missing)}")
    result = {**result, "machine": machine_info()}
    PARITY_RESULTS.mkdir(parents=True, exist_ok=True)
    path = PARITY_RESULTS / f"{result['model']}.json"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    return path


__all__ = [
    "REPO",
    "Curve",
    "read_metrics_csv",
    "run_ours",
    "run_theirs",
    "verdict",
    "git_commit",
    "write_result",
]
