"""The ``mmprep`` command line. Each command lives in ``mmprep/commands/<name>.py``."""

from __future__ import annotations

import logging
import sys

import click

from mmformat.cli import UserErrorGroup
from mmformat.progress import setup_logging
from mmprep import __version__


class PrepGroup(UserErrorGroup):
    """User errors become one line on stderr and exit code 2, never a traceback."""

    prog = "mmprep"
    interrupted = "interrupted; no partial output was left behind"


@click.group(cls=PrepGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mmprep")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Turn raw recommendation dumps into k-cored, split datasets with item features and kNN graphs.

    \b
    Examples:
      mmprep build --dataset all-beauty --raw-dir data/ --out out/all-beauty
      mmprep cold-start out/all-beauty
      mmprep info out/all-beauty
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    setup_logging(level, "%(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from mmprep.commands import build, cold_start, download, features, graph, info, interop, verify

    for module in (build, cold_start, download, features, graph, info, interop, verify):
        for command in module.COMMANDS:
            main.add_command(command)


_register()

# commands whose process keeps the memory it frees (mmformat.allocator): one large job, then exit
_KEEPS_FREED_MEMORY = ("build",)


def run(argv: list[str] | None = None) -> None:
    """The console script: :func:`main`, with the allocator tuned first when the command is ``build``."""
    from mmformat.allocator import keep_freed_memory_for

    args = sys.argv[1:] if argv is None else argv
    keep_freed_memory_for(args, _KEEPS_FREED_MEMORY)
    main(args=args, prog_name="mmprep")


if __name__ == "__main__":
    run()
