"""Fetch a recipe's raw files: resumable (HTTP Range), checksum-verified, renamed into place when complete."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from mmformat.hashing import sha256_file
from mmformat.progress import bar as progress_bar
from mmprep.errors import PrepError
from mmprep.recipes import RawFile, Recipe

CHUNK = 1 << 20


def fetch(url: str, dest: Path, sha256: str | None = None, timeout: float = 30.0, quiet: bool = False) -> str:
    """Download ``url`` to ``dest`` via ``dest.part`` (resuming a previous partial download); returns the sha256."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "mmprep"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            response = None
        else:
            raise PrepError(f"download failed: HTTP {e.code} {e.reason} for {url}", dest) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise PrepError(
            f"cannot download {url} ({reason}); are you offline? Fetch it by hand into {dest.parent}", dest
        ) from None
    if response is not None:
        with response:
            resumed = have and response.status == 206
            mode = "ab" if resumed else "wb"
            total = response.length
            total = (total + have) if (total and resumed) else total
            with (
                open(part, mode) as f,
                progress_bar(
                    total=total,
                    initial=have if resumed else 0,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    disable=quiet,
                ) as bar,
            ):
                while block := response.read(CHUNK):
                    f.write(block)
                    bar.update(len(block))
    digest = sha256_file(part)
    if sha256 and digest != sha256:
        part.unlink()
        raise PrepError(
            f"sha256 mismatch: expected {sha256}, got {digest}; the partial file was removed", dest
        )
    os.replace(part, dest)
    return digest


def download_recipe(recipe: Recipe, raw_dir: Path, quiet: bool = False) -> list[tuple[RawFile, str]]:
    """Fetch every file of ``recipe`` that is not already in ``raw_dir``; returns ``(file, status)`` pairs."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    done: list[tuple[RawFile, str]] = []
    for f in recipe.files:
        dest = raw_dir / f.name
        if dest.is_file():
            if f.sha256 and sha256_file(dest) != f.sha256:
                raise PrepError(f"exists but its sha256 differs from the recipe's {f.sha256}", dest)
            done.append((f, "present"))
            continue
        if not f.url:
            if f.optional:
                done.append((f, "skipped (no public URL)"))
                continue
            raise PrepError(f"recipe {recipe.name!r} gives no URL for {f.name}; obtain it by hand", dest)
        if f.member:
            archive = raw_dir / Path(f.url.rsplit("/", 1)[-1])
            if not archive.is_file():
                fetch(f.url, archive, None, quiet=quiet)
            extract_member(archive, f.member, dest, f.sha256)
            done.append((f, f"extracted from {archive.name}"))
            continue
        fetch(f.url, dest, f.sha256, quiet=quiet)
        done.append((f, "downloaded"))
    return done


def extract_member(archive: Path, member: str, dest: Path, sha256: str | None = None) -> None:
    """Extract one file of a zip archive to ``dest`` atomically, checking its sha256 when given."""
    try:
        with zipfile.ZipFile(archive) as z, z.open(member) as src:
            tmp = dest.with_name(dest.name + ".part")
            with open(tmp, "wb") as out:
                while block := src.read(CHUNK):
                    out.write(block)
    except KeyError:
        raise PrepError(f"archive has no member {member!r}", archive) from None
    except zipfile.BadZipFile as e:
        raise PrepError(f"not a valid zip archive ({e})", archive) from None
    if sha256 and sha256_file(tmp) != sha256:
        tmp.unlink()
        raise PrepError(f"sha256 of {member} differs from the recipe's {sha256}", archive)
    os.replace(tmp, dest)
