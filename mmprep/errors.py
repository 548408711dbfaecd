"""mmprep's user error: one line naming the file, the line or record, and the problem (``mmformat.errors``)."""

from __future__ import annotations

from mmformat.errors import UserError


class PrepError(UserError):
    """An error caused by the user's input; the CLI prints it as one line and exits non-zero."""
