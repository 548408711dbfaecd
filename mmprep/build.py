"""``mmprep build``: raw dump -> dedupe -> rating filter -> k-core -> dense ids -> warm split -> dataset dir."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmformat.hashing import describe_file
from mmformat.uncached import record_digests
from mmprep.dataset.writer import DatasetWriter, interaction_pieces, user_item_order
from mmprep.errors import PrepError
from mmprep.filter.collect import Collected, collect
from mmprep.filter.encode import Vocabulary
from mmprep.filter.kcore import (
    compact,
    dense_remap,
    first_occurrence_mask,
    index_dtype,
    kcore_compact,
    shrink,
)
from mmprep.progress import stage
from mmprep.sources.base import SkipLog, SourceFiles, get_source
from mmprep.sources.spill import current as current_spill
from mmprep.sources.spill import spill_settings
from mmprep.split.warm import warm_split

ITEM_TEXT_CHOICES = ("meta", "reviews", "none")


@dataclass
class BuildParams:
    """Every parameter of a build; all of them are recorded in the manifest."""

    k_user: int = 5
    k_item: int = 5
    min_rating: float | None = None
    id_order: str = "first"
    item_text: str = "meta"
    split_method: str = "random"
    val_ratio: float = 0.1
    test_ratio: float = 0.1
    seed: int = 123
    ensure_train_items: bool = True
    strict: bool = False


@dataclass
class Filtered:
    """Interactions after dedupe, rating filter and k-core, with dense indices."""

    users: np.ndarray
    items: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    user_ids: pa.Array
    item_ids: pa.Array
    counts: dict[str, Any]


def filter_interactions(
    enc: Collected, params: BuildParams, skips: SkipLog, source_label: str = "interactions"
) -> Filtered:
    """Dedupe (first occurrence of each user-item pair wins), optional rating threshold, iterative k-core,
    then dense re-indexing in the requested order. Vectorised; raw ids stay Arrow strings.

    Works on the int32 codes of :func:`~mmprep.filter.collect.collect` and releases them as it goes (its
    ``u_codes``/``i_codes`` are set to None); rating and timestamp are read for the surviving rows only.
    """
    u_codes, i_codes, u_vocab, i_vocab = enc.u_codes, enc.i_codes, enc.u_vocab, enc.i_vocab
    enc.u_codes = enc.i_codes = None
    n_raw = len(u_codes)
    counts: dict[str, Any] = {"raw_records": n_raw}
    first = first_occurrence_mask(u_codes, i_codes, len(i_vocab))
    if not first.all():
        r = int(np.argmin(first))
        user, item = u_vocab.id_of(int(u_codes[r])), i_vocab.id_of(int(i_codes[r]))
        skips.add(
            "duplicates",
            source_label,
            None,
            f"record {r + 1} repeats the pair user {user} / item {item}",
            n=n_raw - int(np.count_nonzero(first)),
        )
    # from here the surviving rows' codes and raw row numbers are compacted in place, step by step (no copies
    # of the raw-length arrays: they are the largest thing a build holds)
    rows = np.arange(n_raw, dtype=index_dtype(n_raw))
    n = compact(first, u_codes, i_codes, rows)
    del first
    counts["after_dedupe"] = n

    if params.min_rating is not None:
        n = compact(enc.rating.take(rows[:n]) >= params.min_rating, u_codes, i_codes, rows)
    counts["after_rating"] = n

    if n == 0 and counts["after_dedupe"]:
        raise PrepError(
            f"no interactions rated at least {params.min_rating} ({counts['after_dedupe']:,} records after "
            "dedupe); lower --min-rating"
        )
    n, iterations, _ = kcore_compact(u_codes[:n], i_codes[:n], rows[:n], params.k_user, params.k_item)
    u_codes, i_codes, keep = shrink(u_codes, n), shrink(i_codes, n), shrink(rows, n)
    del rows
    counts["kcore_iterations"] = iterations
    if n == 0:
        raise PrepError(
            f"no interactions left after the k-core filter ({counts['raw_records']:,} records read, "
            f"{counts['after_dedupe']:,} after dedupe, {counts['after_rating']:,} after the rating filter; "
            f"k_user={params.k_user}, k_item={params.k_item}); lower --k-user/--k-item"
        )
    u_labels = _labels(u_vocab) if params.id_order == "sorted" else None
    i_labels = _labels(i_vocab) if params.id_order == "sorted" else None
    users, u_old = dense_remap(u_codes, params.id_order, u_labels)
    del u_codes
    items, i_old = dense_remap(i_codes, params.id_order, i_labels)
    del i_codes
    counts.update(users=len(u_old), items=len(i_old), interactions=n)
    return Filtered(
        users=users,
        items=items,
        rating=enc.rating.take(keep),
        timestamp=enc.timestamp.take(keep),
        user_ids=u_vocab.take(u_old),
        item_ids=i_vocab.take(i_old),
        counts=counts,
    )


def _labels(vocab: Vocabulary) -> np.ndarray:
    """The ids of a vocabulary as a numpy object array (to sort codes by id)."""
    return np.asarray(vocab.ids().to_pylist(), dtype=object)


def nothing_read_error(paths: list[Path], skips: SkipLog, source_format: str) -> PrepError:
    """The error for interaction files that yielded no record: every line rejected (named with the count and
    the first rejected line and reason, which usually means the wrong ``--source``), or files that are empty."""
    for path in paths:
        if str(path) in skips.by_file:
            n, line, problem = skips.by_file[str(path)]
            return PrepError(
                f"every record was rejected ({n:,} bad lines; the first, line {line}: {problem}); "
                f"is --source {source_format} the right format?",
                path,
            )
    where = paths[0] if len(paths) == 1 else None
    names = "" if where else f" ({', '.join(map(str, paths))})"
    return PrepError(f"no interaction records in the input{names} (empty, or blank lines only)", where)


def validate_params(params: BuildParams) -> None:
    """Refuse parameters that would silently build something meaningless (they may come from a recipe)."""
    for name in ("k_user", "k_item"):
        if getattr(params, name) < 0:
            raise PrepError(f"{name} must be 0 or more, got {getattr(params, name)}")
    for name in ("val_ratio", "test_ratio"):
        if not 0 <= getattr(params, name) < 1:
            raise PrepError(f"{name} must be in [0, 1), got {getattr(params, name)}")
    if params.val_ratio + params.test_ratio >= 1:
        raise PrepError(
            f"val_ratio + test_ratio must be below 1 (got {params.val_ratio} + {params.test_ratio}): "
            "nothing would be left for training"
        )


def align_item_fields(item_ids: pa.Array, fields: pa.Table | None) -> pa.Table | None:
    """Reorder a source's item-field table (any order, maybe missing ids) to ``item_ids`` order."""
    if fields is None or fields.num_rows == 0:
        return None
    pos = pc.index_in(item_ids, value_set=fields.column("item_id"))
    return fields.take(pos)


def _optional(column: np.ndarray, missing) -> np.ndarray | None:
    """None when every value is the missing marker (so the column is written as all-null)."""
    if len(column) == 0:
        return None
    present = ~np.isnan(column) if missing is np.nan else column != missing
    return column if present.any() else None


def build_dataset(
    name: str,
    source_format: str,
    files: SourceFiles,
    params: BuildParams,
    out: Path,
    overwrite: bool = False,
    quiet: bool = False,
    recipe: dict[str, Any] | None = None,
    memory_limit: int | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline and write ``out`` atomically. Returns the manifest.

    ``memory_limit`` (bytes) caps DuckDB, which then spills to a folder next to ``out`` that is removed
    afterwards (:mod:`mmprep.sources.spill`); the raw rows' rating and timestamp wait in that folder too
    (:mod:`mmprep.filter.collect`). It changes neither the result nor the manifest.
    """
    if memory_limit is None:
        return _build(name, source_format, files, params, out, overwrite, quiet, recipe)
    with spill_settings(memory_limit, out):
        try:
            return _build(name, source_format, files, params, out, overwrite, quiet, recipe)
        except duckdb.OutOfMemoryException:
            raise PrepError(
                f"DuckDB ran out of memory under --memory-limit {memory_limit >> 20}MB; give it more"
            ) from None


def _build(
    name: str,
    source_format: str,
    files: SourceFiles,
    params: BuildParams,
    out: Path,
    overwrite: bool,
    quiet: bool,
    recipe: dict[str, Any] | None,
) -> dict[str, Any]:
    from mmprep.split.warm import METHODS

    if params.item_text not in ITEM_TEXT_CHOICES:
        raise PrepError(f"--item-text must be one of {', '.join(ITEM_TEXT_CHOICES)}")
    if params.split_method not in METHODS:
        raise PrepError(f"unknown split method {params.split_method!r} (choose from {', '.join(METHODS)})")
    validate_params(params)
    skips = SkipLog(strict=params.strict)
    source = get_source(source_format)(files, skips)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # the dump is hashed on the thread that reads it for parsing (one read of it, not two); files read
        # another way are hashed here afterwards, beside the filter stage
        with stage(f"reading {source_format} interactions", quiet), record_digests() as digests:
            settings = current_spill()  # rating and timestamp of every raw row wait on disk there
            try:
                collected = collect(source.interaction_stream(), settings.temp_dir if settings else None)
            except PrepError as e:  # the collector knows the record, not the file
                if e.path is not None:
                    raise
                paths = files.get("interactions")
                where = paths[0] if len(paths) == 1 else ", ".join(p.name for p in paths)
                raise PrepError(e.problem, where) from None
        hashes = pool.submit(
            lambda: [dict(describe_file(p, known=digests), role=role) for role, p in files.all()]
        )
        try:
            if collected.rows == 0:
                raise nothing_read_error(files.get("interactions"), skips, source_format)
            with stage(f"dedupe + k-core ({collected.rows:,} records)", quiet):
                label = ", ".join(p.name for p in files.get("interactions"))
                filtered = filter_interactions(collected, params, skips, label)
        finally:
            collected.close()
        del collected  # the raw vocabularies (every distinct id of the dump) are not needed any more
        with stage("item fields", quiet):
            fields = None
            if params.item_text == "meta":
                fields = align_item_fields(filtered.item_ids, source.items(filtered.item_ids))
            elif params.item_text == "reviews":
                reviews = source.review_text(filtered.item_ids)
                if reviews is None:
                    raise PrepError(
                        f"source {source_format} cannot provide review text (--item-text reviews)"
                    )
                fields = align_item_fields(filtered.item_ids, reviews)
        with stage(f"{params.split_method} split", quiet):
            ts = filtered.timestamp if (filtered.timestamp >= 0).all() else None
            split = warm_split(
                filtered.users,
                filtered.items,
                ts,
                method=params.split_method,
                val_ratio=params.val_ratio,
                test_ratio=params.test_ratio,
                seed=params.seed,
                ensure_train_items=params.ensure_train_items,
            )
        source_files = hashes.result()

    rating = _optional(filtered.rating, np.nan)
    timestamp = _optional(filtered.timestamp, -1)
    with stage(f"writing {out}", quiet), DatasetWriter(out, overwrite=overwrite) as w:
        # one sort by (user, item) (the pairs are deduplicated: no ties); each split's rows are a subsequence
        # of it, so they stay sorted
        order = user_item_order(filtered.users, filtered.items, distinct=True).astype(
            index_dtype(len(filtered.users)), copy=False
        )
        labels = split.label[order]

        def pieces(rows: np.ndarray) -> Iterator[pa.Table]:
            return interaction_pieces(filtered.users, filtered.items, rating, timestamp, rows)

        def write_split(code: int, split_name: str) -> None:
            w.split("warm", split_name, pieces(order[labels == code]))

        # the files are written two at a time (Parquet's zstd writer is single-threaded and frees the GIL;
        # 100M-review build: 15-19.5 s -> 10.8 s), each interaction file in pieces of whole row groups, so at
        # most two pieces' gathered columns are in memory, not the whole interaction and train tables
        with ThreadPoolExecutor(max_workers=2) as writers:
            jobs = [
                writers.submit(lambda: w.interactions(pieces(order))),
                writers.submit(write_split, 0, "train"),
                writers.submit(w.users, filtered.user_ids),
                writers.submit(w.items, filtered.item_ids, fields),
                writers.submit(write_split, 1, "val"),
                writers.submit(write_split, 2, "test"),
            ]
            for job in jobs:
                job.result()
        w.manifest.update(
            name=name,
            source={"format": source_format, "files": source_files},
            params=asdict(params),
            counts=filtered.counts,
            skipped=skips.to_manifest(),
            splits={
                "warm": {
                    "method": params.split_method,
                    "val_ratio": params.val_ratio,
                    "test_ratio": params.test_ratio,
                    "seed": params.seed,
                    "counts": split.counts(),
                    "promoted": {"users": split.promoted_users, "items": split.promoted_items},
                }
            },
            features={},
            graphs={},
        )
        if recipe:
            w.manifest["recipe"] = recipe
        manifest = dict(w.manifest)
    return manifest
