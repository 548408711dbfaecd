"""Click callbacks that validate option values with one-line user errors (click's own usage errors span
several lines): a negative k, a ratio outside [0, 1)."""

from __future__ import annotations

from collections.abc import Callable

import click

from mmprep.errors import PrepError


def at_least(low: int) -> Callable[[click.Context, click.Parameter, int | None], int | None]:
    """A callback refusing an integer below ``low``."""

    def check(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
        if value is not None and value < low:
            raise PrepError(f"--{param.name.replace('_', '-')} must be {low} or more, got {value}")
        return value

    return check


def ratio(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A callback refusing a share outside [0, 1)."""
    if value is not None and not 0 <= value < 1:
        raise PrepError(f"--{param.name.replace('_', '-')} must be in [0, 1), got {value}")
    return value
