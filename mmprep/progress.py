"""Progress and stage reporting on stderr (rich), so data on stdout and files stays clean."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

console = Console(stderr=True)
log = logging.getLogger("mmprep")


@contextmanager
def stage(title: str, quiet: bool = False) -> Iterator[None]:
    """Show a spinner while a pipeline stage runs, then one line with its duration."""
    start = time.perf_counter()
    if quiet:
        yield
    else:
        with console.status(f"[bold]{title}[/bold] ..."):
            yield
    elapsed = time.perf_counter() - start
    log.info("%s took %.2fs", title, elapsed)
    if not quiet:
        console.print(f"[green]✓[/green] {title} [dim]({elapsed:.1f}s)[/dim]")
