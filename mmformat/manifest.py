"""``manifest.json``: read it strictly, check the files it lists, and write it (whole or after an update).

A manifest is untrusted input: counts are checked to be integers within the int32 index range before anything
is sized from them, file entries are checked for shape and for paths that stay inside the dataset directory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from mmformat.atomic import write_json
from mmformat.errors import FormatError
from mmformat.hashing import describe_file, sha256_file, sha256_json
from mmformat.layout import FORMAT_VERSION, MANIFEST

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
MODALITY = re.compile(r"[a-z0-9_]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_count(counts: dict[str, Any], key: str, low: int, high: int, path: Path) -> None:
    value = counts.get(key)
    if not _is_int(value) or not low <= value <= high:
        raise FormatError(f"counts.{key} is {value!r}: expected an integer in [{low}, {high}]", path)


def _check_rel_path(rel: Any, where: str, path: Path) -> str:
    if not isinstance(rel, str) or not rel:
        raise FormatError(f"{where}: path {rel!r} is not a non-empty string", path)
    parts = PurePosixPath(rel).parts
    if rel.startswith("/") or "\\" in rel or ".." in parts or rel == MANIFEST:
        raise FormatError(f"{where}: path {rel!r} is not a relative path inside the dataset", path)
    return rel


def validate_manifest(manifest: Any, path: Path) -> dict[str, Any]:
    """Check the manifest's structure (docs/FORMAT.md, "manifest.json"); returns it, raises FormatError."""
    if not isinstance(manifest, dict):
        raise FormatError("manifest is not a JSON object", path)
    version = manifest.get("format_version")
    if not _is_int(version) or version != FORMAT_VERSION:
        raise FormatError(
            f"format_version {version!r} is not supported (this reader reads {FORMAT_VERSION})", path
        )
    counts = manifest.get("counts")
    if not isinstance(counts, dict):
        raise FormatError("counts missing or not an object", path)
    _check_count(counts, "users", 1, INT32_MAX, path)
    _check_count(counts, "items", 1, INT32_MAX, path)
    if "interactions" in counts:
        _check_count(counts, "interactions", 0, INT64_MAX, path)
    for key in ("features", "graphs", "splits"):
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            raise FormatError(f"{key} is not an object", path)
    for name, entry in (manifest.get("features") or {}).items():
        if not MODALITY.fullmatch(name):
            raise FormatError(f"features: modality name {name!r} is not [a-z0-9_]+", path)
        if not isinstance(entry, dict):
            raise FormatError(f"features.{name} is not an object", path)
    files = manifest.get("files")
    if not isinstance(files, list):
        raise FormatError("files missing or not a list", path)
    seen: set[str] = set()
    for i, entry in enumerate(files):
        where = f"files[{i}]"
        if not isinstance(entry, dict):
            raise FormatError(f"{where} is not an object", path)
        rel = _check_rel_path(entry.get("path"), where, path)
        if rel in seen:
            raise FormatError(f"{where}: {rel} is listed twice", path)
        seen.add(rel)
        if not _is_int(entry.get("bytes")) or entry["bytes"] < 0:
            raise FormatError(
                f"{where} ({rel}): bytes {entry.get('bytes')!r} is not a non-negative integer", path
            )
        if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
            raise FormatError(f"{where} ({rel}): sha256 {entry.get('sha256')!r} is not 64 hex digits", path)
    return manifest


def read_manifest(root: str | Path) -> dict[str, Any]:
    """Read and validate ``root/manifest.json``; raises FormatError with one line naming the problem."""
    root = Path(root)
    if not root.is_dir():
        raise FormatError("dataset directory not found", root)
    path = root / MANIFEST
    if not path.is_file():
        raise FormatError("not a dataset directory (manifest.json missing)", root)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise FormatError(f"manifest is not valid JSON ({e})", path) from None
    return validate_manifest(manifest, path)


def content_sha256(manifest: dict[str, Any]) -> str:
    """sha256 of what a dataset holds: its format version and the path, size and sha256 of every file.

    Unlike the sha256 of ``manifest.json`` it leaves out ``created_by`` (the time and machine of the build) and
    the command-line parameters, so the same data imported or built twice, here or elsewhere, has the same
    digest; any change to a data file changes it."""
    files = sorted(
        ({k: e[k] for k in ("path", "bytes", "sha256")} for e in manifest.get("files", [])),
        key=lambda e: e["path"],
    )
    return sha256_json({"format_version": manifest.get("format_version"), "files": files})


def data_files(root: str | Path) -> list[str]:
    """Every data file under ``root`` (POSIX relative paths, sorted): not the manifest, nothing hidden."""
    root = Path(root)
    found = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.is_file() and p.name != MANIFEST and not any(part.startswith(".") for part in rel.parts):
            found.append(rel.as_posix())
    return sorted(found)


def check_files(
    root: str | Path,
    manifest: dict[str, Any],
    check_hashes: bool = True,
    skip: Iterable[str] = (),
    unlisted: bool = True,
) -> list[str]:
    """Problems of the listed files (missing, size or sha256 differs) and of data files the manifest omits.

    ``skip``: paths not checked (the files an update is about to replace); an entry ending in ``/`` skips
    everything under that folder. ``unlisted=False`` leaves out the data files the manifest omits.
    """
    root = Path(root)
    skip = set(skip)
    folders = tuple(s for s in skip if s.endswith("/"))
    problems = []
    listed = set()
    for entry in manifest["files"]:
        rel = entry["path"]
        listed.add(rel)
        if rel in skip or rel.startswith(folders):
            continue
        path = root / rel
        if not path.is_file():
            problems.append(f"{rel}: listed in manifest but missing")
        elif path.stat().st_size != entry["bytes"]:
            problems.append(f"{rel}: size {path.stat().st_size} differs from manifest ({entry['bytes']})")
        elif check_hashes and sha256_file(path) != entry["sha256"]:
            problems.append(f"{rel}: sha256 differs from manifest")
    if not unlisted:
        return problems
    problems += [
        f"{rel}: on disk but not listed in manifest"
        for rel in data_files(root)
        if rel not in listed and rel not in skip and not rel.startswith(folders)
    ]
    return problems


def write_manifest(root: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the manifest of a dataset being created: every data file under ``root`` is hashed and listed.

    For changes to an existing dataset use :func:`update_manifest`, which hashes only what was written.
    """
    root = Path(root)
    manifest = dict(manifest)
    manifest["format_version"] = FORMAT_VERSION
    manifest["files"] = [describe_file(root / rel, root) for rel in data_files(root)]
    write_json(root / MANIFEST, manifest)
    return manifest


def update_manifest(
    root: str | Path, manifest: dict[str, Any], written: Iterable[str], replaced_dirs: Iterable[str] = ()
) -> dict[str, Any]:
    """Rewrite the manifest after an update: entries of ``written`` paths are re-hashed, entries under a
    ``replaced_dirs`` folder that no longer exist are dropped, every other entry is kept as it was."""
    root = Path(root)
    written = sorted(set(written))
    prefixes = tuple(d.rstrip("/") + "/" for d in replaced_dirs)
    keep = [
        e
        for e in manifest.get("files", [])
        if e["path"] not in written
        and not (e["path"].startswith(prefixes) and not (root / e["path"]).is_file())
    ]
    entries = keep + [describe_file(root / rel, root) for rel in written]
    manifest = dict(manifest)
    manifest["format_version"] = FORMAT_VERSION
    manifest["files"] = sorted(entries, key=lambda e: e["path"])
    write_json(root / MANIFEST, manifest)
    return manifest
