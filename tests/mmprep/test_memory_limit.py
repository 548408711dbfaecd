"""``mmprep build --memory-limit``: DuckDB capped and spilling next to the output, same dataset, no leftovers."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import threading

import pytest

from benchmarks._generate import generate
from mmprep.build import BuildParams, build_dataset
from mmprep.errors import PrepError
from mmprep.sources import spill
from mmprep.sources.base import SourceFiles
from mmprep.sources.netflix import duckdb_session
from tests.mmprep.oneline import one_line_error, run_cli

N_REVIEWS = 60_000


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    """A synthetic Amazon-2014 dump, gzip (block-wise fast read) and plain (DuckDB whole-file read)."""
    folder = tmp_path_factory.mktemp("dump")
    gz = folder / "reviews_Synthetic_5.json.gz"
    generate(gz, N_REVIEWS, seed=7, progress=False)
    plain = folder / "reviews_Synthetic_5.json"
    with gzip.open(gz, "rb") as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return {"gz": gz, "plain": plain}


def _build(dump, out, *extra):
    result = run_cli(
        "build", "--source", "amazon2014", "--input", f"interactions={dump}", "--item-text", "none",
        "--out", out, "--quiet", *extra,
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)


def _parquet_hashes(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.parquet"))
    }


# the gzip dump is parsed in blocks; the plain file is read whole by DuckDB, whose result must fit the limit
@pytest.mark.parametrize(("kind", "limit"), [("gz", "64MB"), ("plain", "128MB")])
def test_tiny_memory_limit_builds_the_same_bytes_and_leaves_no_spill_folder(dumps, tmp_path, kind, limit):
    _build(dumps[kind], tmp_path / "free" / "ds", "--memory-limit", "100%")
    _build(dumps[kind], tmp_path / "tiny" / "ds", "--memory-limit", limit)
    free, tiny = _parquet_hashes(tmp_path / "free" / "ds"), _parquet_hashes(tmp_path / "tiny" / "ds")
    assert len(free) >= 5 and free == tiny
    assert [p.name for p in (tmp_path / "tiny").iterdir()] == ["ds"]


def test_sessions_inside_the_settings_are_capped_and_spill_next_to_the_output(tmp_path):
    out = tmp_path / "datasets" / "ds"
    with spill.spill_settings(64 << 20, out) as settings:
        assert settings.temp_dir.parent == out.parent and settings.temp_dir.is_dir()
        with duckdb_session() as con:
            assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "64.0 MiB"
            temp = con.execute("SELECT current_setting('temp_directory')").fetchone()[0]
            assert os.path.dirname(temp) == str(settings.temp_dir)
            # a sort of ~250 MB of rows cannot fit in 64 MiB: it must spill into the folder and still finish
            largest, done = [0], threading.Event()

            def watch():
                while not done.wait(0.01):
                    files = [f for f in settings.temp_dir.rglob("*") if f.is_file()]
                    largest[0] = max(largest[0], sum(f.stat().st_size for f in files if f.exists()))

            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                rows = con.execute(
                    "SELECT max(r), count(*) FROM (SELECT row_number() OVER (ORDER BY h) AS r "
                    "FROM (SELECT md5(i::VARCHAR) AS h FROM range(6000000) t(i)))"
                ).fetchone()
            finally:
                done.set()
                watcher.join()
            assert rows == (6_000_000, 6_000_000)
            assert largest[0] > 64 << 20
    assert not settings.temp_dir.exists()
    assert spill.current() is None
    with duckdb_session() as con:  # outside a build: DuckDB's default limit again
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] != "64.0 MiB"


def test_spill_folder_is_removed_on_error_and_orphans_of_killed_builds_go(tmp_path):
    out = tmp_path / "ds"
    orphan = tmp_path / f"{spill.SPILL_PREFIX}999999999-abc"
    orphan.mkdir()
    (orphan / "spill.tmp").write_bytes(b"x" * 100)
    with pytest.raises(RuntimeError), spill.spill_settings(64 << 20, out) as settings:
        assert not orphan.exists()
        raise RuntimeError("build failed")
    assert not settings.temp_dir.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [("64MB", 64 << 20), ("1.5GiB", 3 << 29), ("2g", 2 << 30), ("67108864", 64 << 20)],
)
def test_memory_limit_sizes(text, expected):
    assert spill.parse_memory_limit(text) == expected


def test_share_of_ram():
    assert spill.parse_memory_limit("50%") == spill.default_memory_limit()
    with pytest.raises(PrepError, match="share of RAM"):
        spill.parse_memory_limit("150%")


@pytest.mark.parametrize(
    ("value", "needle"),
    [("lots", "'lots'"), ("4 parsecs", "4 parsecs"), ("1MB", "at least 64MB"), ("0%", "0%")],
)
def test_bad_memory_limit_is_one_line(tmp_path, value, needle):
    result = run_cli(
        "build",
        "--dataset",
        "all-beauty",
        "--raw-dir",
        "data",
        "--out",
        tmp_path / "o",
        "--memory-limit",
        value,
    )
    one_line_error(result, "--memory-limit", needle)
    assert not (tmp_path / "o").exists()


def test_running_out_of_duckdb_memory_is_a_user_error_naming_the_limit(dumps, tmp_path):
    """Below what the CLI accepts, DuckDB fails on the whole-file read: one PrepError, nothing left behind."""
    files = SourceFiles({"interactions": [dumps["plain"]]})
    out = tmp_path / "ds"
    with pytest.raises(PrepError, match=r"DuckDB ran out of memory under --memory-limit 16MB"):
        build_dataset(
            "x", "amazon2014", files, BuildParams(item_text="none"), out, quiet=True, memory_limit=16 << 20
        )
    assert list(tmp_path.iterdir()) == []
