"""Copy an original repository into a scratch folder and apply listed string-replacement shims to the copy.

A shim is ``(file, old, new, why)``: every occurrence of ``old`` in ``file`` (relative to the copied folder)
becomes ``new``. A shim whose ``old`` text is absent fails loudly, so a different checkout of the original is
noticed instead of silently running unshimmed. :func:`describe` gives the one-line form for the result file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

Shim = tuple[str, str, str, str]


def describe(shim: Shim) -> str:
    """``file: `old` -> `new` (why)``, one line."""
    file, old, new, why = shim
    old, new = (text.replace("\n", "\\n") for text in (old, new))
    return f"{file}: `{old}` -> `{new}` ({why})"


def patched_copy(src: Path, dst: Path, shims: list[Shim]) -> list[str]:
    """Copy ``src`` to ``dst`` (replacing it, ``.git`` left out), apply ``shims`` there, return their lines."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".git", "__pycache__"))
    for file, old, new, _why in shims:
        path = dst / file
        text = path.read_text()
        if old not in text:
            raise SystemExit(f"{path}: shim text {old!r} not found (a different checkout of the original?)")
        path.write_text(text.replace(old, new))
    return [describe(s) for s in shims]
