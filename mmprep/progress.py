"""Stage reporting and summary lines on stderr (via :mod:`mmformat.progress`), so stdout and files stay data."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from mmformat.progress import echo

log = logging.getLogger(__name__)


class _Console:
    """``console.print(message)``: a command's summary line on stderr, printed above any progress bar."""

    def print(self, message: str) -> None:
        echo(message)


console = _Console()


@contextmanager
def stage(title: str, quiet: bool = False) -> Iterator[None]:
    """Run a pipeline stage, then report one line with its duration (on stderr unless ``quiet``)."""
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    log.info("%s took %.2fs", title, elapsed)
    if not quiet:
        echo(f"✓ {title} ({elapsed:.1f}s)")
