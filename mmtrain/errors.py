"""mmtrain's user error: one line naming the file, the line or record, and the problem (``mmformat.errors``).

mmtrain never imports mmprep; both share the base class of the format package.
"""

from __future__ import annotations

from mmformat.errors import UserError


class TrainError(UserError):
    """A user error (bad config, unknown model, missing feature, invalid dataset)."""
