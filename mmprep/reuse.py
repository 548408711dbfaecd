"""Whether an existing dataset directory is already what ``mmprep build`` would write (so a rerun can reuse it)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mmformat.errors import UserError
from mmformat.hashing import sha256_file
from mmformat.layout import MANIFEST
from mmprep.sources.base import SourceFiles

log = logging.getLogger(__name__)


def _same_inputs(recorded: list[dict[str, Any]], files: SourceFiles) -> bool:
    """The same raw files by role and content: sizes first (cheap), then sha256."""
    given = files.all()
    if len(recorded) != len(given):
        return False
    want = sorted((f.get("role"), f.get("bytes"), f.get("sha256")) for f in recorded)
    if sorted((r, b) for r, b, _ in want) != sorted((role, p.stat().st_size) for role, p in given):
        return False
    return want == sorted((role, p.stat().st_size, sha256_file(p)) for role, p in given)


def up_to_date(out: Path, name: str, source_format: str, files: SourceFiles, params: Any) -> bool:
    """True when ``out`` holds a valid dataset built from the same raw files (sha256) with the same
    name, source format and parameters (a dataclass, compared with the manifest's ``params``)."""
    from mmprep.dataset.reader import verify_dataset

    path = Path(out) / MANIFEST
    if not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        source = manifest.get("source") or {}
        same = (
            manifest.get("name") == name
            and source.get("format") == source_format
            and manifest.get("params") == json.loads(json.dumps(asdict(params)))
            and _same_inputs(source.get("files") or [], files)
        )
        if not same:
            return False
        problems = verify_dataset(out, check_hashes=False)
    except (OSError, ValueError, UserError) as e:
        log.info("%s: not reusable (%s)", out, e)
        return False
    if problems:
        log.info("%s: not reusable (%s)", out, "; ".join(problems))
    return not problems
