"""The full check of a dataset directory against docs/FORMAT.md, as ``mmprep verify`` runs it."""

from __future__ import annotations

from pathlib import Path

from mmformat import layout as fmt
from mmformat.errors import FormatError
from mmformat.manifest import check_files
from mmformat.reader import DatasetReader


def verify(root: str | Path, check_hashes: bool = True) -> list[str]:
    """Every problem of a dataset directory as ``relative/path[:row]: problem`` lines (empty when valid).

    A manifest that cannot be read at all raises :class:`FormatError` (nothing else can be checked).
    Checked: listed files exist with their size and sha256, no unlisted data files, ``manifest.features``
    agrees with the feature files, table schemas, users/items indices 0..n-1, every index in range, cold
    roles, feature shapes and finiteness, graph shapes.
    """
    ds = DatasetReader(root)
    problems = check_files(ds.root, ds.manifest, check_hashes=check_hashes)
    problems += ds.layout_problems()
    checks = [ds.users, ds.items, ds.interactions]
    checks += [lambda s=s: ds.splits(s) for s in ds.split_sets()]
    if (ds.root / fmt.COLD_ITEMS).is_file() or "cold" in ds.split_sets():
        checks.append(ds.cold_items)
    checks += [
        lambda m=m: ds.feature(m) for m in ds.modalities() if (ds.root / fmt.feature_path(m)).is_file()
    ]
    checks += [lambda p=p: ds.read_graph(p) for by_k in ds.graphs().values() for p in by_k.values()]
    for check in checks:
        try:
            check()
        except FormatError as e:
            problems.append(_relative(e, ds.root))
    return problems


def _relative(e: FormatError, root: Path) -> str:
    """The error's line with its path made relative to the dataset root."""
    if e.path is None:
        return e.problem
    try:
        where = Path(e.path).relative_to(root).as_posix()
    except ValueError:
        where = e.path
    if where == ".":
        return e.problem
    return f"{where}{'' if e.line is None else f':{e.line}'}: {e.problem}"
