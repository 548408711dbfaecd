"""The click group both CLIs use: user errors and environment failures become one line and exit code 2."""

from __future__ import annotations

import errno
import sys

import click

from mmformat.errors import UserError


class UserErrorGroup(click.Group):
    """A click group that turns user errors into one line on stderr and exit code 2, never a traceback.

    ``prog`` (``mmprep``, ``mmtrain``) prefixes the line; ``interrupted`` is printed on Ctrl-C (exit 130).
    """

    prog = "modalrec"
    interrupted = "interrupted"

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as e:
            click.echo(f"{self.prog}: error: {e}", err=True)
            sys.exit(2)
        except OSError as e:
            # a filesystem problem with a named path (read-only volume, another user's files, a file where a
            # folder should be, a full disk) is the environment, not a bug: one line, no traceback
            if e.filename is None and e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = f"{e.filename}: " if e.filename else ""
            hint = (
                " (free some space; nothing was replaced)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
            )
            click.echo(f"{self.prog}: error: {where}{e.strerror or e}{hint}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo(f"{self.prog}: {self.interrupted}", err=True)
            sys.exit(130)
