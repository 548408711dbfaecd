"""Synthetic Amazon-2014 review dumps (``reviews_<Cat>_5.json.gz`` format) for the preprocessing benchmark.

Every record carries the 2014 field set in the 2014 key order (``reviewerID, asin, reviewerName, helpful,
reviewText, overall, summary, unixReviewTime, reviewTime``); about 1.5% of users have no ``reviewerName`` key,
as in the real files. Users and items get heavy-tailed (Pareto) activity weights and every review draws its
user and its item from them independently, so a few users and items are very active and most are not. With
the default shape about 30% of the raw reviews survive an iterative 5-core (30.4% at 1M, 29.1% at 10M
reviews with seed 0), and 0.5-3% of the reviews repeat an earlier (user, item) pair (0.6% at 1M, 2.4% at
10M). About a fifth of the items have all-digit ISBN-like ASINs (``0000007919``), as in the real files.
Review texts are built from a fixed pool of sentences (a Zipf-weighted vocabulary, a few JSON escapes and
non-ASCII characters), a few hundred characters on average with a long tail.

Strings are assembled column-wise with pyarrow compute kernels in chunks of rows and compressed on a second
thread (ISA-L level 2 when ``isal`` is installed, else a ``gzip -1`` child). Files are cached under ``work_dir/n<N>-seed<S>-v<V>/`` with a JSON
sidecar recording the row count and the uncompressed size, so re-runs reuse them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:
    from isal import igzip_threaded
except ImportError:  # optional: falls back to gzip -1
    igzip_threaded = None

GENERATOR_VERSION = 1
DUMP_NAME = "reviews_Synthetic_5.json.gz"
CHUNK_ROWS = 200_000
FIRST_DAY = int(np.datetime64("2000-01-01", "D").astype(np.int64))
LAST_DAY = int(np.datetime64("2014-07-23", "D").astype(np.int64))

COMMON_WORDS = (
    "the I it and a to this is for of my with was that in but not have on very so great they as one "
    "you are product use would be just like good all well had these its if or at can out up more than "
    "price quality work works love really will after only no when them also get does some time nice "
    "easy used bought fit small size little much what other which recommend because about been first "
    "could better happy buy any did too back even will make other well long still made using"
).split()
SYLLABLES = (
    "ba be bi bo bu ca ce co da de di do fa fe fi ga ge go la le li lo ma me mi mo na ne ni no pa pe pi po "
    "ra re ri ro sa se si so ta te ti to va ve vi wa we"
)
FIRST_NAMES = (
    "James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara Richard Susan "
    "Joseph Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa Anthony Betty Mark Sandra Donald "
    "Ashley Steven Kimberly Paul Emily Andrew Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Melissa"
).split()
LAST_NAMES = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark "
    "Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams"
).split()
SPECIAL_FRAGMENTS = ('\\"really\\"', "caf\\u00e9", "na\u00efve", "\\u2013", "5\\/5", "100%", "(sic)")
ALPHABET36 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)


@dataclass(frozen=True)
class Shape:
    """Degree distribution of the synthetic dump (tuned so ~30% of rows survive a 5-core)."""

    mean_user_degree: float = 3.0
    user_pareto_shape: float = 1.5
    mean_item_degree: float = 10.0
    item_pareto_shape: float = 1.4
    extra_duplicate_share: float = 0.002
    nameless_user_share: float = 0.015


@dataclass
class DumpInfo:
    """A generated dump and what the benchmark needs to know about it."""

    path: Path
    rows: int
    uncompressed_bytes: int
    compressed_bytes: int
    seconds: float
    cached: bool


def dump_path(work_dir: Path, n: int, seed: int) -> Path:
    """Where the dump of ``n`` reviews with ``seed`` is cached."""
    return Path(work_dir) / f"n{n}-seed{seed}-v{GENERATOR_VERSION}" / DUMP_NAME


DRAW_ROWS = 1 << 24


def _pareto_draw(rng: np.random.Generator, n_rows: int, n_pool: int, shape: float) -> np.ndarray:
    """``n_rows`` draws (int32) from ``0..n_pool-1`` with Pareto(shape) activity weights.

    The uniforms are drawn :data:`DRAW_ROWS` at a time (the same stream as one call, without its 8 bytes a row
    of temporaries)."""
    cdf = np.cumsum(rng.pareto(shape, n_pool) + 1.0)
    cdf /= cdf[-1]
    out = np.empty(n_rows, dtype=np.int32)
    for lo in range(0, n_rows, DRAW_ROWS):
        hi = min(n_rows, lo + DRAW_ROWS)
        out[lo:hi] = np.minimum(np.searchsorted(cdf, rng.random(hi - lo), side="right"), n_pool - 1)
    return out


def _fixed_width_strings(chars: np.ndarray) -> pa.Array:
    """A pyarrow string array from an ``(n, width)`` uint8 matrix of ASCII codes."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(chars, dtype=np.uint8)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _scrambled_digits(idx: np.ndarray, width: int, base: int, multiplier: int) -> np.ndarray:
    """``(n, width)`` digit codes of ``idx * multiplier mod base**width``: unique, random-looking ids."""
    x = (idx.astype(np.int64) * np.int64(multiplier)) % np.int64(base**width)
    out = np.empty((len(idx), width), dtype=np.uint8)
    for col in range(width - 1, -1, -1):
        x, digit = np.divmod(x, base)
        out[:, col] = ALPHABET36[digit]
    return out


def _const_columns(text: str, n: int) -> np.ndarray:
    return np.tile(np.frombuffer(text.encode(), dtype=np.uint8), (n, 1))


def user_ids(n: int, rng: np.random.Generator) -> pa.Array:
    """14-character reviewer ids like ``A2SUAM1J3GNN3B``: ``A``, 3 random characters, 10 unique ones."""
    rand = ALPHABET36[rng.integers(0, 36, size=(n, 3))]
    uniq = _scrambled_digits(np.arange(n), 10, 36, 999_999_999_989)
    return _fixed_width_strings(np.hstack([_const_columns("A", n), rand, uniq]))


def user_ids_at(idx: np.ndarray) -> pa.Array:
    """Reviewer ids of the users ``idx`` shaped like :func:`user_ids`, but a pure function of the index (the
    three "random" characters are scrambled digits too), for streams generated block by block."""
    n = len(idx)
    rand = _scrambled_digits(idx, 3, 36, 7_919)
    uniq = _scrambled_digits(idx, 10, 36, 999_999_999_989)
    return _fixed_width_strings(np.hstack([_const_columns("A", n), rand, uniq]))


def item_ids(n: int) -> pa.Array:
    """10-character ASINs: most ``B00`` + 7 base-36 characters, every fifth an ISBN-like ``0`` + 9 digits."""
    return item_ids_at(np.arange(n))


def item_ids_at(idx: np.ndarray) -> pa.Array:
    """The ASINs of the items ``idx`` (as :func:`item_ids`)."""
    n = len(idx)
    isbn = idx % 5 == 0
    b00 = np.hstack([_const_columns("B00", n), _scrambled_digits(idx, 7, 36, 2_147_483_647)])
    digits = np.hstack([_const_columns("0", n), _scrambled_digits(idx // 5 + 1, 9, 10, 7_919)])
    return _fixed_width_strings(np.where(isbn[:, None], digits, b00))


def _vocabulary(rng: np.random.Generator, size: int = 6000) -> tuple[np.ndarray, np.ndarray]:
    """Common words followed by pseudo-words, with Zipf weights (rank^-1.05)."""
    syl = np.array(SYLLABLES.split())
    n_pseudo = size - len(COMMON_WORDS)
    lengths = rng.integers(2, 5, size=n_pseudo)
    parts = syl[rng.integers(0, len(syl), size=(n_pseudo, 4))]
    pseudo = ["".join(p[:k]) for p, k in zip(parts, lengths, strict=True)]
    words = np.array(COMMON_WORDS + pseudo, dtype=object)
    weights = 1.0 / np.arange(1, size + 1) ** 1.05
    return words, weights / weights.sum()


def _sentence(rng: np.random.Generator, words: np.ndarray, p: np.ndarray, n_words: int) -> str:
    chosen = list(words[rng.choice(len(words), size=n_words, p=p)])
    if rng.random() < 0.06:
        chosen.insert(int(rng.integers(0, n_words)), str(rng.choice(SPECIAL_FRAGMENTS)))
    if n_words > 8 and rng.random() < 0.4:
        chosen[n_words // 2] += ","
    text = " ".join(chosen)
    return text[:1].upper() + text[1:] + str(rng.choice([".", ".", ".", "!", "..."]))


def text_pools(rng: np.random.Generator) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Pools of pre-escaped JSON string contents: sentences, summaries and reviewer names.

    Built once per dump with a small Python loop over the (fixed-size) pools, never over reviews.
    """
    words, p = _vocabulary(rng)
    sentence_words = np.clip(rng.lognormal(2.4, 0.45, size=8000).astype(int), 3, 45)
    sentences = [_sentence(rng, words, p, int(k)) for k in sentence_words]
    summaries = [_sentence(rng, words, p, int(k)).rstrip(".!") for k in rng.integers(1, 7, size=3000)]
    summaries[:6] = ["Five Stars", "Great product", "Works as described", "Four Stars", "Love it", "Meh"]
    first = rng.choice(FIRST_NAMES, size=6000)
    last = rng.choice(LAST_NAMES, size=6000)
    style = rng.integers(0, 6, size=6000)
    names = []
    for f, la, s in zip(first, last, style, strict=True):
        names.append(
            {
                0: f"{f} {la}",
                1: f"{f[0]}. {la}",
                2: f"{f.lower()}{la[0].lower()}",
                3: f'{f} \\"{f[:3].lower()}\\" {la}',
                4: "Amazon Customer",
                5: f"{f} {la[0]}.",
            }[int(s)]
        )
    return pa.array(sentences), pa.array(summaries), pa.array(names)


def _review_time_strings(days: np.ndarray) -> pa.Array:
    """``MM D, YYYY`` (month zero-padded, day not), as the 2014 ``reviewTime`` field."""
    d = days.astype("datetime64[D]")
    months = d.astype("datetime64[M]")
    month = months.astype(np.int64) % 12
    day = (d - months).astype(np.int64)
    year = d.astype("datetime64[Y]").astype(np.int64)
    month_s = pa.array([f"{m:02d} " for m in range(1, 13)]).take(pa.array(month))
    day_s = pa.array([f"{k}, " for k in range(1, 32)]).take(pa.array(day))
    year_s = pa.array([str(1970 + y) for y in range(0, 60)]).take(pa.array(year))
    return pc.binary_join_element_wise(month_s, day_s, year_s, "")


@dataclass
class _Rows:
    """Per-review integer columns of the whole dump (strings are built per chunk from these)."""

    user: np.ndarray
    item: np.ndarray
    day: np.ndarray
    rating: np.ndarray
    helpful_total: np.ndarray
    helpful_yes: np.ndarray
    summary: np.ndarray


def _rows(n: int, shape: Shape, rng: np.random.Generator) -> tuple[_Rows, int, int]:
    """The integer columns of all ``n`` reviews, in file order (grouped by item, oldest first).

    Drawn in int64 exactly as before and narrowed to int32 column by column, so a 100M-review dump needs
    about 3 GB here instead of 6 GB, with the same values."""
    n_users = max(10, int(n / shape.mean_user_degree))
    n_items = max(10, int(n / shape.mean_item_degree))
    user = _pareto_draw(rng, n, n_users, shape.user_pareto_shape)
    item = _pareto_draw(rng, n, n_items, shape.item_pareto_shape)
    n_extra = int(shape.extra_duplicate_share * n)
    if n_extra:
        src = rng.integers(0, n, size=n_extra)
        dst = rng.integers(0, n, size=n_extra)
        user[dst], item[dst] = user[src], item[src]
    age = np.minimum(rng.exponential(700.0, size=n).astype(np.int64), LAST_DAY - FIRST_DAY)
    day = (LAST_DAY - age).astype(np.int32)
    del age
    order = np.lexsort((day, item))  # the 2014 files are grouped by product
    user, item, day = user[order], item[order], day[order]
    del order
    rating = rng.choice(np.arange(1, 6), size=n, p=[0.07, 0.06, 0.10, 0.21, 0.56]).astype(np.int8)
    total = np.where(rng.random(n) < 0.55, 0, np.minimum(rng.zipf(1.8, size=n), 500)).astype(np.int32)
    yes = rng.binomial(total, 0.75).astype(np.int32)
    summary = rng.integers(0, 3000, size=n).astype(np.int32)
    rows = _Rows(user, item, day, rating, total, yes, summary)
    return rows, n_users, n_items


def _chunk_lines(
    rows: _Rows,
    lo: int,
    hi: int,
    seed: int,
    users: pa.Array,
    user_names: pa.Array,
    items: pa.Array,
    pools: tuple[pa.Array, pa.Array, pa.Array],
) -> pa.Array:
    """One JSON line (with its newline) per review of rows ``lo:hi``."""
    sentences, summaries, _ = pools
    rng = np.random.default_rng([seed, lo])
    n = hi - lo
    n_sent = np.minimum(1 + rng.geometric(1 / 6.0, size=n), 120)
    offsets = np.r_[0, np.cumsum(n_sent)].astype(np.int32)
    picks = rng.integers(0, len(sentences), size=int(offsets[-1]))
    text = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), sentences.take(pa.array(picks))), " ")
    u = pa.array(rows.user[lo:hi])
    rating = pa.array(["1.0", "2.0", "3.0", "4.0", "5.0"]).take(pa.array(rows.rating[lo:hi] - 1))
    return pc.binary_join_element_wise(
        '{"reviewerID": "',
        users.take(u),
        '", "asin": "',
        items.take(pa.array(rows.item[lo:hi])),
        '", ',
        user_names.take(u),
        '"helpful": [',
        pc.cast(pa.array(rows.helpful_yes[lo:hi]), pa.string()),
        ", ",
        pc.cast(pa.array(rows.helpful_total[lo:hi]), pa.string()),
        '], "reviewText": "',
        text,
        '", "overall": ',
        rating,
        ', "summary": "',
        summaries.take(pa.array(rows.summary[lo:hi])),
        '", "unixReviewTime": ',
        pc.cast(pa.array(rows.day[lo:hi].astype(np.int64) * 86400), pa.string()),
        ', "reviewTime": "',
        _review_time_strings(rows.day[lo:hi]),
        '"}\n',
        "",
    )


def _name_segments(n_users: int, names: pa.Array, shape: Shape, rng: np.random.Generator) -> pa.Array:
    """Per user, ``"reviewerName": "<name>", `` or the empty string for users without a name."""
    picked = names.take(pa.array(rng.integers(0, len(names), size=n_users)))
    seg = pc.binary_join_element_wise('"reviewerName": "', picked, '", ', "")
    nameless = rng.random(n_users) < shape.nameless_user_share
    return pc.if_else(pa.array(nameless), pa.scalar(""), seg)


def _compressed_writer(raw: BinaryIO) -> tuple[Callable[[memoryview], object], Callable[[], None]]:
    """``(write, close)`` of a gzip stream into ``raw``, compressed off the main thread.

    ISA-L level 2 (``isal.igzip_threaded``) when installed: about 4x faster than ``gzip -1`` and a smaller
    file; else a ``gzip -1`` child process (which compresses on the other core)."""
    if igzip_threaded is not None:
        stream = igzip_threaded.open(raw, "wb", compresslevel=2, threads=1)
        return stream.write, stream.close
    if shutil.which("gzip") is not None:
        proc = subprocess.Popen(["gzip", "-1", "-c"], stdin=subprocess.PIPE, stdout=raw)

        def close() -> None:
            proc.stdin.close()
            if proc.wait() != 0:
                raise RuntimeError("gzip -1 failed while writing the synthetic dump")

        return proc.stdin.write, close
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    return (lambda data: raw.write(compressor.compress(data))), (lambda: raw.write(compressor.flush()))


def generate(path: Path, n: int, seed: int, shape: Shape = Shape(), progress: bool = True) -> tuple[int, int]:
    """Write ``n`` reviews to ``path`` (gzip). Returns ``(rows, uncompressed bytes)``.

    The uncompressed text depends only on ``n``, ``seed`` and ``shape`` (not on the compressor)."""
    rng = np.random.default_rng(seed)
    rows, n_users, n_items = _rows(n, shape, rng)
    pools = text_pools(rng)
    users = user_ids(n_users, rng)
    items = item_ids(n_items)
    names = _name_segments(n_users, pools[2], shape, rng)
    tmp = path.with_name(path.name + ".tmp-gen")
    written = 0
    started = time.perf_counter()
    with open(tmp, "wb") as raw:
        write, close = _compressed_writer(raw)
        try:
            for lo in range(0, n, CHUNK_ROWS):
                hi = min(n, lo + CHUNK_ROWS)
                lines = _chunk_lines(rows, lo, hi, seed, users, names, items, pools)
                off = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=0)
                start = int(off[lines.offset])
                stop = int(off[lines.offset + len(lines)])
                write(memoryview(lines.buffers()[2])[start:stop])
                written += stop - start
                if progress:
                    rate = hi / max(time.perf_counter() - started, 1e-9)
                    print(f"\r  generating {hi:,}/{n:,} reviews ({rate:,.0f}/s)", end="", flush=True)
        finally:
            close()
    if progress:
        print()
    os.replace(tmp, path)
    return n, written


def ensure_dump(work_dir: Path, n: int, seed: int, shape: Shape = Shape(), progress: bool = True) -> DumpInfo:
    """The cached dump of ``n`` reviews, generating it first when missing (or made by another version)."""
    path = dump_path(work_dir, n, seed)
    sidecar = path.with_name("dump.json")
    expected = {"n": n, "seed": seed, "version": GENERATOR_VERSION, "shape": asdict(shape)}
    if path.is_file() and sidecar.is_file():
        meta = json.loads(sidecar.read_text())
        if {k: meta.get(k) for k in expected} == expected:
            return DumpInfo(
                path,
                meta["rows"],
                meta["uncompressed_bytes"],
                path.stat().st_size,
                meta["seconds"],
                cached=True,
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows, size = generate(path, n, seed, shape, progress)
    seconds = time.perf_counter() - start
    sidecar.write_text(json.dumps({**expected, "rows": rows, "uncompressed_bytes": size, "seconds": seconds}))
    return DumpInfo(path, rows, size, path.stat().st_size, seconds, cached=False)
