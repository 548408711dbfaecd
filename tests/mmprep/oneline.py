"""Run the real ``mmprep`` CLI in-process and check the user-error contract: exit 2, one stderr line, no trace."""

from __future__ import annotations

from click.testing import CliRunner, Result

from mmprep.cli import main


def run_cli(*args: object) -> Result:
    """``mmprep ARGS`` through click's runner (stdout and stderr kept apart)."""
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result: Result, *needles: str) -> str:
    """Assert ``result`` is a user error (exit 2, exactly one stderr line, no traceback) containing every
    ``needles``; return that line."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    line = lines[0]
    for needle in needles:
        assert needle in line, (needle, line)
    return line
