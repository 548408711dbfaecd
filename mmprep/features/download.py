"""Fetch item images by URL: concurrent, retried with backoff, cached on disk, failures logged.

A URL's file is cached as ``<cache>/<sha256[:2]>/<sha256(url)><ext>``, written under a temporary name and renamed,
so a killed run leaves no half file and a rerun fetches only what is missing. Server errors (5xx, 429, 408),
timeouts and dropped connections are retried; other HTTP errors (404, 403) are not. Every failure is listed in a
tab-separated log: ``item_idx, item_id, url, attempts, error``.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pacsv

from mmformat.atomic import temp_file
from mmformat.progress import bar as progress_bar
from mmprep import __version__
from mmprep.errors import PrepError
from mmprep.features.folder import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

USER_AGENT = f"modalrec-mmprep/{__version__}"
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
ID_COLUMNS = ("item_id", "asin")
URL_COLUMNS = ("image_url", "imUrl", "url")


@dataclass
class DownloadReport:
    """Counts of one download pass (``urls`` = distinct URLs)."""

    items_with_url: int = 0
    urls: int = 0
    cached: int = 0
    downloaded: int = 0
    failed: int = 0
    failure_log: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/modalrec/images`` (``~/.cache/modalrec/images``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "modalrec" / "images"


def cache_path(cache_dir: Path, url: str) -> Path:
    """Where the file of ``url`` is cached."""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()
    ext = os.path.splitext(urlsplit(url).path)[1].lower()
    return Path(cache_dir) / digest[:2] / f"{digest}{ext if ext in IMAGE_EXTENSIONS else '.img'}"


def _transient(err: BaseException) -> bool:
    if isinstance(err, urllib.error.HTTPError):
        return err.code in _RETRY_STATUS
    return isinstance(err, urllib.error.URLError | TimeoutError | ConnectionError | http.client.HTTPException)


def fetch(url: str, dest: Path, retries: int, timeout: float, backoff: float) -> tuple[bool, int, str]:
    """Download ``url`` to ``dest`` atomically; ``(ok, attempts, last error)``."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        return False, 0, f"unsupported URL scheme {scheme!r}"
    error = ""
    for attempt in range(1, retries + 2):
        try:
            req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                body = resp.read()
            if not body:
                raise http.client.HTTPException("empty response body")
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = temp_file(dest.parent, dest.name)
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            os.replace(tmp, dest)
            return True, attempt, ""
        except (OSError, ValueError, http.client.HTTPException) as e:
            error = f"{type(e).__name__}: {e}"
            if not _transient(e) or attempt > retries:
                return False, attempt, error
            time.sleep(backoff * 2 ** (attempt - 1))
    return False, retries + 1, error


FetchResult = tuple[str, bool, int, str]  # url, ok, attempts, last error
Fetcher = Callable[[list[str], dict[str, Path], int, float, float, int], Iterator[FetchResult]]


def fetch_in_threads(
    todo: list[str], target: dict[str, Path], retries: int, timeout: float, backoff: float, workers: int
) -> Iterator[FetchResult]:
    """Fetch ``todo`` in a pool of ``workers`` threads of this process, yielding each result when done."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(fetch, u, target[u], retries, timeout, backoff): u for u in todo}
        for fut in as_completed(futures):
            yield (futures[fut], *fut.result())


def download_images(
    urls: pa.Array,
    item_ids: pa.Array,
    cache_dir: Path,
    *,
    workers: int = 16,
    retries: int = 3,
    timeout: float = 20.0,
    backoff: float = 0.5,
    failure_log: Path | None = None,
    fetcher: Fetcher = fetch_in_threads,
) -> tuple[list[str | None], DownloadReport]:
    """Fetch every item's URL (row i = item_idx i; null or empty = no image); returns local paths or None.

    ``fetcher`` downloads the missing files (threads of this process, or Ray tasks:
    :func:`mmprep.features.ray_engine.fetch_on_ray`)."""
    cache_dir = Path(cache_dir)
    urls = pc.if_else(pc.equal(pc.utf8_trim_whitespace(urls.cast(pa.string())), ""), None, urls)
    has = np.asarray(pc.is_valid(urls), dtype=bool)
    url_list = urls.to_pylist()
    unique = sorted({u for u in url_list if u is not None})
    report = DownloadReport(items_with_url=int(has.sum()), urls=len(unique))
    target = {u: cache_path(cache_dir, u) for u in unique}
    todo = [u for u in unique if not target[u].is_file()]
    report.cached = len(unique) - len(todo)
    failed: dict[str, tuple[int, str]] = {}
    if todo:
        with progress_bar(total=len(todo), unit="img", desc="download") as bar:
            for url, ok, attempts, error in fetcher(todo, target, retries, timeout, backoff, workers):
                if ok:
                    report.downloaded += 1
                else:
                    failed[url] = (attempts, error)
                bar.update(1)
    report.failed = len(failed)
    paths = [None if u is None or u in failed else str(target[u]) for u in url_list]
    if failed:
        log_path = Path(failure_log) if failure_log else cache_dir / "failures.tsv"
        _write_failures(log_path, url_list, item_ids.to_pylist(), failed)
        report.failure_log = str(log_path)
        log.warning("%d of %d image URLs failed; see %s", len(failed), len(unique), log_path)
    return paths, report


def _write_failures(path: Path, urls: list, ids: list, failed: dict[str, tuple[int, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path.parent, path.name)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("item_idx\titem_id\turl\tattempts\terror\n")
        for i, (url, item_id) in enumerate(zip(urls, ids, strict=True)):
            if url in failed:
                attempts, error = failed[url]
                f.write(f"{i}\t{item_id}\t{url}\t{attempts}\t{error.replace(chr(9), ' ')}\n")
    os.replace(tmp, path)


def read_url_file(path: Path, item_ids: pa.Array) -> tuple[pa.Array, dict[str, int]]:
    """Image URL of each item (row i = item_idx i, null when unknown) from a CSV with a header.

    The id column is the first of ``item_id``, ``asin`` found; the URL column the first of
    ``image_url``, ``imUrl``, ``url`` (MMRec's ``<ds>_url.csv`` is ``itemID,asin,imUrl``). Rows whose id is not
    an item are counted and ignored; with repeated ids the first row wins.
    """
    path = Path(path)
    if not path.is_file():
        raise PrepError("URL file not found", path)
    with open(path, encoding="utf-8", errors="replace") as f:
        header = next(csv.reader([f.readline()]), [])
    try:
        options = pacsv.ConvertOptions(
            column_types={n: pa.string() for n in header}, strings_can_be_null=True
        )
        table = pacsv.read_csv(path, convert_options=options)
    except pa.ArrowInvalid as e:
        raise PrepError(f"cannot parse CSV ({e})", path) from None
    id_col = next((c for c in ID_COLUMNS if c in table.column_names), None)
    url_col = next((c for c in URL_COLUMNS if c in table.column_names), None)
    if id_col is None or url_col is None:
        raise PrepError(
            f"needs an id column ({', '.join(ID_COLUMNS[:2])}) and a URL column ({', '.join(URL_COLUMNS)}); "
            f"has {table.column_names}",
            path,
            1,
        )
    ids = table.column(id_col).combine_chunks()
    urls = table.column(url_col).combine_chunks()
    pos = pc.index_in(item_ids.cast(pa.string()), value_set=ids)
    found = np.asarray(pc.is_valid(pos), dtype=bool)
    out = urls.take(pc.fill_null(pos, 0))
    out = pc.if_else(pa.array(found), out, pa.nulls(len(out), pa.string()))
    known = np.asarray(pc.is_in(ids, value_set=item_ids.cast(pa.string())), dtype=bool)
    stats = {
        "rows": table.num_rows,
        "unknown_ids": int((~known).sum()),
        "items_with_url": int(np.asarray(pc.is_valid(out), dtype=bool).sum()),
    }
    return out, stats
