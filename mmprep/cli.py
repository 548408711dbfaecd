"""The ``mmprep`` command line. Each command lives in ``mmprep/commands/<name>.py``."""

from __future__ import annotations

import errno
import logging
import sys

import click

from mmprep import __version__
from mmprep.errors import PrepError


class PrepGroup(click.Group):
    """A click group that turns user errors into one line on stderr and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PrepError as e:
            click.echo(f"mmprep: error: {e}", err=True)
            sys.exit(2)
        except OSError as e:
            # a filesystem problem with a named path (read-only volume, another user's files, a file where a
            # folder should be, a full disk) is the environment, not a bug: one line, no traceback
            if e.filename is None and e.errno != errno.ENOSPC:
                raise
            where = f"{e.filename}: " if e.filename else ""
            click.echo(f"mmprep: error: {where}{e.strerror or e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("mmprep: interrupted; no partial output was left behind", err=True)
            sys.exit(130)


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
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from mmprep.commands import build, cold_start, download, features, graph, info, interop, verify

    for module in (build, cold_start, download, features, graph, info, interop, verify):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
