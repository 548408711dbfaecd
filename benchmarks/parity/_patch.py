"""Copying an original repository to a work folder and applying its shims (exact string replacements).

Each shim is ``(file, old, new, why)``; it must match at least once, so a shim that no longer applies (a
different commit of the original) fails loudly instead of silently running unshimmed code. The result file
lists every shim as one line (:func:`describe`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

Shim = tuple[str, str, str, str]


class ShimError(RuntimeError):
    """A shim's text was not found in the copied original."""


def copy_original(repo: Path, dest: Path, ignore: tuple[str, ...] = (".git", "log", "data")) -> Path:
    """A fresh copy of ``repo`` at ``dest`` (replacing it), without ``ignore``d top-level entries."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(repo, dest, ignore=lambda d, names: [n for n in names if Path(d) == repo and n in ignore])
    return dest


def apply_shims(root: Path, shims: list[Shim], count: int | None = None) -> None:
    """Apply every shim to the copy at ``root`` (all occurrences of ``old``; new files when ``old`` is empty).

    With ``count``, each ``old`` must occur exactly that many times (the CRIPAC scripts ask for 1)."""
    for rel, old, new, why in shims:
        path = root / rel
        if not old:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new)
            continue
        text = path.read_text()
        if old not in text:
            raise ShimError(f"{rel}: shim text not found: {old!r}")
        if count is not None and text.count(old) != count:
            raise ShimError(f"{rel}: shim '{why}' expects {old!r} exactly {count} time(s)")
        path.write_text(text.replace(old, new))


def describe(shims: list[Shim]) -> list[str]:
    """One line per shim for the result file: ``file: `old` -> `new` (why)``, whitespace runs as one space."""
    lines = []
    for rel, old, new, why in shims:
        old, new = " ".join(old.split()), " ".join(new.split())  # a multi-line shim shown on one line
        if not old:
            lines.append(f"{rel}: new file `{new}` ({why})")
        else:
            lines.append(f"{rel}: `{old}` -> `{new}` ({why})")
    return lines
