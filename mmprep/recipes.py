"""Dataset recipes (``recipes/datasets/<name>.yaml``): which raw files, where to get them, which parameters."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmprep.errors import PrepError


def recipe_dir() -> Path:
    """Where dataset recipes live: ``$MODALREC_RECIPES``, else the source checkout, else the installed copy."""
    if env := os.environ.get("MODALREC_RECIPES"):
        return Path(env) / "datasets"
    checkout = Path(__file__).resolve().parent.parent / "recipes" / "datasets"
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "modalrec" / "recipes" / "datasets"


@dataclass
class RawFile:
    """One raw file of a recipe: its role for the source reader, name, public URL and (when pinned) sha256."""

    role: str
    name: str
    url: str | None = None
    sha256: str | None = None
    optional: bool = False
    member: str | None = None  # path inside a zip archive at ``url``


@dataclass
class Recipe:
    name: str
    source: str
    description: str = ""
    files: list[RawFile] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    cold: dict[str, Any] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    notes: str = ""
    path: Path | None = None


def recipe_names() -> list[str]:
    return sorted(p.stem for p in recipe_dir().glob("*.yaml"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Load a recipe by name (from ``recipes/datasets``) or by path to a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = recipe_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(recipe_names())
        raise PrepError(f"no dataset recipe {str(name_or_path)!r} (known: {known})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise PrepError(f"invalid YAML ({str(e).splitlines()[0]})", path) from None
    if not isinstance(raw, dict) or "source" not in raw or "files" not in raw:
        raise PrepError("a recipe needs at least `source` and `files`", path)
    if not isinstance(raw["files"], dict):
        raise PrepError("`files` must map each role to its file entries", path)
    files = []
    for role, entries in raw["files"].items():
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, str):
                entry = {"name": entry}
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise PrepError(f"file entry of role {role!r} has no name", path)
            files.append(
                RawFile(
                    role=role,
                    name=entry["name"],
                    url=entry.get("url"),
                    sha256=entry.get("sha256"),
                    optional=bool(entry.get("optional", False)),
                    member=entry.get("member"),
                )
            )
    return Recipe(
        name=raw.get("name", path.stem),
        source=raw["source"],
        description=raw.get("description", ""),
        files=files,
        params=raw.get("params") or {},
        split=raw.get("split") or {},
        cold=raw.get("cold") or {},
        expected=raw.get("expected") or {},
        notes=raw.get("notes", ""),
        path=path,
    )
