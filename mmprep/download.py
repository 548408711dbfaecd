"""Fetch a recipe's raw files: resumable (HTTP Range), checksum-verified, renamed into place when complete."""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from mmformat.hashing import sha256_file
from mmprep.errors import PrepError
from mmprep.recipes import RawFile, Recipe

CHUNK = 1 << 20
SIDECAR_SUFFIX = ".sha256"

log = logging.getLogger(__name__)


def check_url(url: str, where: Path | None) -> str:
    """``url`` when it is an ``http(s)://host/...`` URL; anything else (``file://``, ``ftp:``, ``data:``, no
    scheme, no host) is a one-line :class:`PrepError` naming the recipe."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as e:
        raise PrepError(f"invalid URL {url!r} ({e})", where) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PrepError(f"unsupported URL {url!r} (only http:// and https:// with a host are fetched)", where)
    return url


def safe_name(name: str, what: str, where: Path | None) -> str:
    """A file name relative to ``--raw-dir`` that stays inside it (no absolute path, no ``..``)."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if not name or pure.is_absolute() or ".." in pure.parts or name.startswith("~") or ":" in pure.parts[0]:
        raise PrepError(f"{what} {name!r} would be written outside --raw-dir; refused", where)
    return name


def _record_unpinned(dest: Path, digest: str) -> None:
    """Warn that ``dest`` has no pinned sha256 and store the computed one in ``<dest>.sha256``."""
    sidecar = dest.with_name(dest.name + SIDECAR_SUFFIX)
    sidecar.write_text(f"{digest}  {dest.name}\n", encoding="utf-8")
    log.warning("%s: no sha256 pinned in the recipe; computed %s (saved in %s)", dest, digest, sidecar.name)


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
                tqdm(
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
    for f in recipe.files:  # everything is checked before anything is written
        safe_name(f.name, "file name", recipe.path)
        if f.member:
            safe_name(f.member, "zip member", recipe.path)
        if f.url:
            check_url(f.url, recipe.path)
            if f.member:
                safe_name(_archive_name(f.url), "archive name", recipe.path)
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
            archive = raw_dir / _archive_name(f.url)
            fresh = not archive.is_file()
            if fresh:
                fetch(f.url, archive, None, quiet=quiet)
            try:
                extract_member(archive, f.member, dest, f.sha256)
            except DamagedArchive as e:
                if fresh:
                    raise PrepError(f"{e}; delete it and run mmprep download again", archive) from None
                log.warning("%s: %s; downloading it again", archive, e)
                archive.unlink()
                fetch(f.url, archive, None, quiet=quiet)
                try:
                    extract_member(archive, f.member, dest, f.sha256)
                except DamagedArchive as again:
                    raise PrepError(f"{again}; delete it and run mmprep download again", archive) from None
            if not f.sha256:
                _record_unpinned(dest, sha256_file(dest))
            done.append((f, f"extracted from {archive.name}"))
            continue
        digest = fetch(f.url, dest, f.sha256, quiet=quiet)
        if not f.sha256:
            _record_unpinned(dest, digest)
        done.append((f, "downloaded"))
    return done


def _archive_name(url: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])


class DamagedArchive(Exception):
    """A zip archive that cannot be opened or whose member fails its CRC."""


def extract_member(archive: Path, member: str, dest: Path, sha256: str | None = None) -> None:
    """Extract one file of a zip archive to ``dest`` atomically, checking its sha256 when given.

    A zip that does not open, or whose member fails its CRC while being read, raises :class:`DamagedArchive`.
    """
    tmp = dest.with_name(dest.name + ".part")
    try:
        with zipfile.ZipFile(archive) as z, z.open(member) as src, open(tmp, "wb") as out:
            while block := src.read(CHUNK):  # zipfile checks the member's CRC when it reaches the end
                out.write(block)
    except KeyError:
        tmp.unlink(missing_ok=True)
        raise PrepError(f"archive has no member {member!r}", archive) from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is not None and Path(e.filename) != archive:
            raise
        raise DamagedArchive(f"damaged zip archive ({e})") from None
    if sha256 and sha256_file(tmp) != sha256:
        tmp.unlink()
        raise PrepError(f"sha256 of {member} differs from the recipe's {sha256}", archive)
    os.replace(tmp, dest)
