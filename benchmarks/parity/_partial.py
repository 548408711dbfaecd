"""Comparing runs that may still be in progress: both sides cut to the epochs every run has finished."""

from __future__ import annotations

from _harness import Curve


def finished_epochs(curve: Curve) -> int:
    """Epochs at the start of ``curve`` with a validation value (a run in progress has a shorter curve)."""
    n = 0
    while n < len(curve.recall) and curve.recall[n] is not None:
        n += 1
    return n


def cut(ours: list[Curve], theirs: Curve) -> int:
    """Cut every curve (in place) to the epochs finished on both sides; returns that number of epochs."""
    n = min(finished_epochs(c) for c in [*ours, theirs])
    for curve in [*ours, theirs]:
        curve.loss, curve.recall, curve.seconds = curve.loss[:n], curve.recall[:n], curve.seconds[:n]
    return n
