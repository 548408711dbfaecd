"""mmformat: the on-disk dataset format that mmprep writes and mmtrain reads (docs/FORMAT.md), defined once.

``layout`` (file names, schemas, version), ``manifest`` (reading, validating and writing ``manifest.json``),
``reader`` (the one strict reader of a dataset directory), ``verify`` (the full check ``mmprep verify`` runs),
``update`` (locked, verified changes to an existing dataset), ``errors`` (the user-error base class and
``FormatError``), ``cli`` (the click group that prints user errors as one line, SIGTERM as Ctrl-C), ``atomic``
(temp-then-rename writes, write locks, sweeping dead writers' temporaries), ``hashing`` (sha256), ``uncached``
(large files read past the page cache) and ``allocator`` (a long job's process keeps the memory it frees). It
depends on neither mmprep nor mmtrain, and both depend on it.
"""

from mmformat.layout import FORMAT_VERSION

__all__ = ["FORMAT_VERSION"]
