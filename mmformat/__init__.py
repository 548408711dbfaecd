"""mmformat: the on-disk dataset format that mmprep writes and mmtrain reads (docs/FORMAT.md), defined once.

``layout`` (file names, schemas, version), ``errors`` (the user-error base class), ``cli`` (the click group
that prints user errors as one line), ``atomic`` (temp-then-rename writes), ``hashing`` (sha256). It depends on
neither mmprep nor mmtrain, and both depend on it.
"""

from mmformat.layout import FORMAT_VERSION

__all__ = ["FORMAT_VERSION"]
