"""The click group both CLIs use: user errors and environment failures become one line and exit code 2."""

from __future__ import annotations

import errno
import signal
import sys
import threading

import click

from mmformat.errors import UserError


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same cleanup (temporaries removed, locks released) runs."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


class UserErrorGroup(click.Group):
    """A click group that turns user errors into one line on stderr and exit code 2, never a traceback.

    ``prog`` (``mmprep``, ``mmtrain``) prefixes the line; ``interrupted`` is printed on Ctrl-C (exit 130) and
    on SIGTERM (exit 143, after the same cleanup as Ctrl-C).
    """

    prog = "modalrec"
    interrupted = "interrupted"

    def invoke(self, ctx: click.Context):
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
        try:
            return super().invoke(ctx)
        except Terminated:
            click.echo(f"{self.prog}: {self.interrupted} (SIGTERM)", err=True)
            sys.exit(143)
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
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
