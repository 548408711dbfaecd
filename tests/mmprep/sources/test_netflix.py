"""Netflix Prize source on hand-made combined_data / mv_*.txt / movie_titles.csv files with known bad lines."""

from __future__ import annotations

import gzip
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from mmprep.cli import main
from mmprep.dataset import load_dataset, verify_dataset
from mmprep.errors import PrepError
from mmprep.recipes import load_recipe
from mmprep.sources.base import INTERACTION_COLUMNS, SkipLog, SourceFiles
from mmprep.sources.netflix import NetflixSource


def _unix(day: str) -> int:
    """Midnight UTC of an ISO date, in Unix seconds (computed with the standard library, not our SQL)."""
    return int(datetime.combine(date.fromisoformat(day), datetime.min.time(), timezone.utc).timestamp())


def _source(skips: SkipLog | None = None, **roles: Path | list[Path]) -> NetflixSource:
    files = {role: p if isinstance(p, list) else [p] for role, p in roles.items()}
    return NetflixSource(SourceFiles(files), skips or SkipLog())


COMBINED_1 = (
    "1:\n"
    "1488844,3,2005-09-06\n"
    "822109,5,2005-05-13\n"
    "\n"  # 4: blank, not a record
    "2:\r\n"  # mixed line endings
    "1488844,4,1999-12-31\r\n"
    "bad line\n"  # 7: one field
    "885013,x,2005-01-01\n"  # 8: rating
    "30878,3,2005-02-30\n"  # 9: no such date
    "foo:\n"  # 10: bad header
    "2442,1,2005-01-01\n"  # 11: under the bad header
    "3:\n"
    '"17",2,2005-01-01\n'  # 13: quoted user id
    "124105,4,2004-08-05\n"
)

COMBINED_2 = "4:\n1488844,2,2000-01-01\n99,5,2005-12-31\n"


@pytest.fixture()
def dumps(tmp_path):
    first = tmp_path / "combined_data_1.txt"
    first.write_text(COMBINED_1, encoding="ascii", newline="")
    second = tmp_path / "combined_data_2.txt.gz"
    with gzip.open(second, "wt", encoding="ascii") as f:
        f.write(COMBINED_2)
    return first, second


def test_ratings_with_headers_dates_and_bad_lines(dumps):
    first, second = dumps
    skips = SkipLog()
    table = _source(skips, interactions=[first, second]).interactions()
    assert table.schema == INTERACTION_COLUMNS
    assert table.to_pydict() == {
        "user_id": ["1488844", "822109", "1488844", "124105", "1488844", "99"],
        "item_id": ["1", "1", "2", "3", "4", "4"],
        "rating": [3.0, 5.0, 4.0, 4.0, 2.0, 5.0],
        "timestamp": [
            _unix(d)
            for d in ("2005-09-06", "2005-05-13", "1999-12-31", "2004-08-05", "2000-01-01", "2005-12-31")
        ],
    }
    assert table.column("timestamp")[0].as_py() == 1125964800
    assert skips.counts == {"bad_lines": 6}
    assert skips.examples == [
        f"{first}:7: expected 3 comma-separated fields (user_id,rating,YYYY-MM-DD), found 1",
        f'{first}:8: rating "x" is not a number',
        f'{first}:9: date "2005-02-30" is not a valid YYYY-MM-DD date',
        f'{first}:10: bad movie header "foo:" (expected <movie_id>:)',
        f"{first}:11: rating line under an invalid movie header",
        f'{first}:13: user id ""17"" is not an integer',
    ]


def test_training_set_files_and_lines_before_a_header(tmp_path):
    mv = tmp_path / "mv_0000007.txt"
    mv.write_text("7:\n6,4,2005-01-02\n")
    headless = tmp_path / "mv_0000008.txt"
    headless.write_text("6,4,2005-01-02\n8:\n6,1,2005-01-03\n")
    skips = SkipLog()
    table = _source(skips, interactions=[mv, headless]).interactions()
    assert table.column("item_id").to_pylist() == ["7", "8"]
    assert skips.examples == [f'{headless}:1: rating line before any "<movie_id>:" header']


def test_small_read_blocks_give_the_same_result(dumps, monkeypatch):
    """Headers are carried across the reader's blocks and line numbers keep counting: with 40-byte blocks
    every file is read in many batches, and the records and located bad lines are unchanged."""
    from mmprep.sources import netflix

    first, second = dumps
    whole_skips, small_skips = SkipLog(), SkipLog()
    whole = _source(whole_skips, interactions=[first, second]).interactions()
    monkeypatch.setattr(netflix, "_BLOCK_BYTES", 40)
    small = _source(small_skips, interactions=[first, second]).interactions()
    assert small.equals(whole) and small.num_rows == 6
    assert small_skips.examples == whole_skips.examples and len(small_skips.examples) == 6


@pytest.mark.parametrize("block", [1, 2, 3, 5, 8, 16 << 20])
@pytest.mark.parametrize("compress", [False, True])
def test_line_table_keeps_every_line_and_its_number(tmp_path, monkeypatch, block, compress):
    """BOM, CR LF and LF mixed, blank lines, a control byte, latin-1 text, no final newline: any block size."""
    from mmprep.sources import netflix

    raw = "\ufeffa\r\nbb\n\n\r\nccc\x01\r\n\u00e9\nlast".encode("utf-8")
    path = tmp_path / "lines.txt"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    monkeypatch.setattr(netflix, "_BLOCK_BYTES", block)
    with netflix.duckdb_session() as con:
        netflix.load_lines(con, [path])
        rows = con.execute("SELECT file_idx, line_no, line FROM lines").fetchall()
    lines = ["a", "bb", "", "", "ccc\x01", "\u00e9", "last"]
    assert rows == [(0, n, text) for n, text in enumerate(lines, start=1)]


def test_strict_mode_raises_at_the_first_bad_line(dumps):
    first, second = dumps
    with pytest.raises(PrepError) as e:
        _source(SkipLog(strict=True), interactions=[first, second]).interactions()
    assert (e.value.path, e.value.line) == (str(first), 7)
    assert str(e.value).startswith(f"{first}:7: expected 3 comma-separated fields")


def test_damaged_files_are_located(tmp_path):
    whole = gzip.compress(b"1:\n" + b"".join(b"%d,3,2005-09-06\n" % u for u in range(5000)))
    cut = tmp_path / "combined_data_1.txt.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(PrepError, match="truncated") as e:
        _source(interactions=cut).interactions()
    assert e.value.path == str(cut) and e.value.line is not None
    latin = tmp_path / "combined_data_2.txt"
    latin.write_bytes(b"1:\n5,3,2005-09-06\n6,3,2005-09-06\xe9\n")
    with pytest.raises(PrepError) as e:
        _source(interactions=latin).interactions()
    assert (e.value.path, e.value.line) == (str(latin), 3)
    # any other byte is just text: a control character makes a bad line, not an unreadable file
    control = tmp_path / "combined_data_3.txt"
    control.write_bytes(b"1:\n5,3,2005-09-06\x01\n6,3,2005-09-06\n")
    skips = SkipLog()
    assert _source(skips, interactions=control).interactions().column("user_id").to_pylist() == ["6"]
    assert skips.examples == [f'{control}:2: date "2005-09-06\x01" is not a valid YYYY-MM-DD date']


TITLES = (
    "1,2003,Dinosaur Planet\n"
    "2,NULL,Isle of Man TT 2004 Review\n"
    "3,1997,Character\n"
    "4,1994,Paula Abdul's Get Up & Dance\n"
    "5,2004,The Rise and Fall of ECW\n"
    "6,1997,Sick, Twisted, Funny\n"  # commas inside the title
    "7,1992,Caf\u00e9 \u00c9t\u00e9\n"  # latin-1 bytes
    "8,20x4,Bad Year\n"  # 8: year
    "nine,2004,Bad Id\n"  # 9: id
    "10,2004\n"  # 10: no title
    "1,1999,A repeated id\n"
)


def test_titles_latin1_commas_and_null_years(tmp_path):
    titles = tmp_path / "movie_titles.csv"
    titles.write_bytes(TITLES.encode("latin-1"))
    skips = SkipLog()
    items = _source(skips, interactions=titles, titles=titles).items(
        pa.array(["1", "2", "6", "7", "8", "99"])
    )
    assert items.to_pylist() == [
        {"item_id": "1", "title": "Dinosaur Planet (2003)"},
        {"item_id": "2", "title": "Isle of Man TT 2004 Review"},
        {"item_id": "6", "title": "Sick, Twisted, Funny (1997)"},
        {"item_id": "7", "title": "Caf\u00e9 \u00c9t\u00e9 (1992)"},
    ]
    assert skips.counts == {"bad_lines": 3}
    assert [e.split(": ", 1)[0] for e in skips.examples] == [f"{titles}:{n}" for n in (8, 9, 10)]
    with pytest.raises(PrepError) as e:
        _source(SkipLog(strict=True), interactions=titles, titles=titles).items(pa.array(["1"]))
    assert (e.value.path, e.value.line) == (str(titles), 8)
    assert _source(interactions=titles).items(pa.array(["1"])) is None


def test_build_netflix_end_to_end(dumps, tmp_path):
    first, second = dumps
    titles = tmp_path / "movie_titles.csv"
    titles.write_bytes(TITLES.encode("latin-1"))
    out = tmp_path / "nf"
    result = CliRunner().invoke(
        main,
        [
            "build", "--source", "netflix", "--input", f"interactions={first}", "--input", f"interactions={second}",
            "--input", f"titles={titles}", "--k-user", "1", "--k-item", "1", "--min-rating", "4",
            "--out", str(out), "--quiet",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ds = load_dataset(out)
    assert verify_dataset(out) == []
    c = ds.manifest["counts"]
    # 6 valid ratings, 4 of them >= 4 (822109/1, 1488844/2, 124105/3, 99/4)
    assert (c["raw_records"], c["after_rating"], c["interactions"]) == (6, 4, 4)
    # 6 bad rating lines and 3 bad title lines
    assert ds.manifest["skipped"]["counts"] == {"bad_lines": 9}
    where = [e.split(": ", 1)[0] for e in ds.manifest["skipped"]["examples"]]
    assert where == [f"{first}:{n}" for n in (7, 8, 9, 10, 11, 13)] + [f"{titles}:{n}" for n in (8, 9, 10)]
    assert ds.users.column("user_id").to_pylist() == ["822109", "1488844", "124105", "99"]
    assert ds.items.column("title").to_pylist() == [
        "Dinosaur Planet (2003)",
        "Isle of Man TT 2004 Review",
        "Character (1997)",
        "Paula Abdul's Get Up & Dance (1994)",
    ]
    inter = ds.interactions()
    assert inter.timestamp.tolist() == [
        _unix(d) for d in ("2005-05-13", "1999-12-31", "2004-08-05", "2005-12-31")
    ]


def test_recipe_uses_the_source_roles():
    recipe = load_recipe("netflix")
    assert recipe.source == "netflix"
    roles = {f.role for f in recipe.files}
    assert roles == {"interactions", "titles"} and roles <= set(NetflixSource.roles)
    assert [f.name for f in recipe.files if f.role == "interactions"] == [
        f"combined_data_{n}.txt" for n in range(1, 5)
    ]
