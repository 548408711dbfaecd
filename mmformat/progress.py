"""Progress bars and log output on stderr for both CLIs (tqdm), without bars and log lines colliding.

Every bar in mmprep and mmtrain comes from :func:`bar`; :func:`setup_logging` installs a handler that writes
through ``tqdm.write``, which clears the bars, prints the line and redraws them, so a log line never lands in
the middle of a bar. Data goes to stdout and files; bars, logs and :func:`echo` messages go to stderr.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def bar(iterable: Iterable[T] | None = None, *, desc: str | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr, redrawn at most once a second (``kwargs`` go to tqdm: total, unit, disable...)."""
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("mininterval", 1.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, desc=desc, **kwargs)


def echo(message: str) -> None:
    """One line of user-facing output on stderr, printed above any active bar."""
    tqdm.write(message, file=sys.stderr)


class TqdmHandler(logging.Handler):
    """A logging handler that writes each record through ``tqdm.write`` to the current ``sys.stderr``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never raise into the caller: report it the standard way
            self.handleError(record)


def setup_logging(level: int, fmt: str) -> None:
    """Configure the root logger for a CLI as ``logging.basicConfig`` does (only when it has no handler yet:
    an embedding program or pytest keeps its own), with records written above the progress bars."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = TqdmHandler()
    handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level)
