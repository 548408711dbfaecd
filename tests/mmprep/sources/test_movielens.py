"""MovieLens source: the real ml-100k files, hand-made ml-1m / ml-latest / original ml-100k layouts with known
bad lines, strict mode, and `mmprep build` end to end checked against an independent pandas k-core."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from mmprep.cli import main
from mmprep.dataset import load_dataset, verify_dataset
from mmprep.errors import PrepError
from mmprep.recipes import load_recipe
from mmprep.sources.base import INTERACTION_COLUMNS, SkipLog, SourceFiles
from mmprep.sources.movielens import ML100K_GENRES, MovieLensSource
from tests.paths import SHARED_DATA

ML100K = SHARED_DATA / "movielens-100k"


@pytest.fixture(scope="module")
def ml100k() -> Path:
    if not (ML100K / "u.data").is_file() or not (ML100K / "u.item").is_file():
        pytest.skip("../shared/data/movielens-100k is not available")
    return ML100K


def _source(skips: SkipLog | None = None, **roles: Path | list[Path]) -> MovieLensSource:
    files = {role: p if isinstance(p, list) else [p] for role, p in roles.items()}
    return MovieLensSource(SourceFiles(files), skips or SkipLog())


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _pandas_ratings(ml100k: Path) -> pd.DataFrame:
    """The shared copy of u.data, read independently (header line, ``|`` separated; see its PROVENANCE)."""
    return pd.read_csv(ml100k / "u.data", sep="|", dtype=str)


# ---------------------------------------------------------------- real ml-100k


def test_real_ml100k_ratings_are_all_read_in_file_order(ml100k):
    skips = SkipLog()
    table = _source(skips, interactions=ml100k / "u.data").interactions()
    assert table.schema == INTERACTION_COLUMNS
    assert table.num_rows == 100_000
    assert skips.counts == {}
    assert pa.compute.count_distinct(table.column("user_id")).as_py() == 943
    assert pa.compute.count_distinct(table.column("item_id")).as_py() == 1682
    ratings = table.column("rating").to_numpy()
    assert np.bincount(ratings.astype(int))[1:].tolist() == [6110, 11370, 27145, 34174, 21201]
    ref = _pandas_ratings(ml100k)
    assert table.column("user_id").to_pylist() == ref["user"].tolist()
    assert table.column("item_id").to_pylist() == ref["item"].tolist()
    assert np.array_equal(table.column("timestamp").to_numpy(), ref["timestamp"].astype(np.int64).to_numpy())
    assert table.slice(0, 1).to_pylist() == [
        {"user_id": "196", "item_id": "242", "rating": 3.0, "timestamp": 881250949}
    ]


def test_real_ml100k_items_have_titles_and_genres(ml100k):
    skips = SkipLog()
    src = _source(skips, interactions=ml100k / "u.data", meta=ml100k / "u.item")
    ids = pa.array([str(i) for i in range(1, 1683)])
    items = src.items(ids)
    assert items.num_rows == 1682
    assert skips.counts == {}
    assert items.column_names == ["item_id", "title", "categories"]
    ref = pd.read_csv(ml100k / "u.item", sep="|", dtype=str, encoding="utf-8")
    assert items.column("item_id").to_pylist() == ref["item"].tolist()
    assert items.column("title").to_pylist() == ref["title"].str.strip().tolist()
    flags = ref[list(ML100K_GENRES)].astype(int).to_numpy()
    expected = [
        [g for g, f in zip(ML100K_GENRES, row, strict=True) if f and g != "unknown"] or None
        for row in flags.tolist()
    ]
    assert items.column("categories").to_pylist() == expected
    first = items.slice(0, 1).to_pylist()[0]
    assert first == {
        "item_id": "1",
        "title": "Toy Story (1995)",
        "categories": ["Animation", "Children's", "Comedy"],
    }
    # only "unknown"-flagged (267) or unflagged (1373) movies have no genres
    no_genre = items.filter(pa.compute.is_null(items.column("categories"))).column("item_id").to_pylist()
    assert no_genre == ["267", "1373"]
    # only the requested ids come back
    assert src.items(pa.array(["50", "99999"])).column("title").to_pylist() == ["Star Wars (1977)"]


def test_original_ml100k_layout_reads_the_same(ml100k, tmp_path):
    """The GroupLens zip has tab-separated u.data and a latin-1 u.item, both without header lines."""
    ref = _pandas_ratings(ml100k)
    tab = tmp_path / "u.data"
    ref.to_csv(tab, sep="\t", header=False, index=False)
    lines = (ml100k / "u.item").read_bytes().split(b"\n", 1)[1]
    u_item = tmp_path / "u.item"
    u_item.write_bytes(lines.replace(b"Toy Story (1995)", "Toy Story (1995) \u00e9".encode("latin-1")))
    original = _source(interactions=tab, items=u_item)
    shared = _source(interactions=ml100k / "u.data", items=ml100k / "u.item")
    assert original.interactions().equals(shared.interactions())
    ids = pa.array(["1", "2", "1682"])
    titles = original.items(ids).column("title").to_pylist()
    assert titles == [
        "Toy Story (1995) \u00e9",
        "GoldenEye (1995)",
        "Scream of Stone (Schrei aus Stein) (1991)",
    ]
    assert original.items(ids).column("categories").equals(shared.items(ids).column("categories"))


# ---------------------------------------------------------------- hand-made ml-1m


RATINGS_DAT = (
    "1::1193::5::978300760\n"
    "1::661::3::978302109\r\n"  # a stray CRLF
    "\n"  # blank lines are not records
    "2::x::4::978300275\n"  # 4: movie id
    "2::3408::4\n"  # 5: missing timestamp
    "3::1193::4.5::978300275\n"
    "3::1193::nan::978300275\n"  # 7: rating
    "4::1::5::97830027a\n"  # 8: timestamp
    "u5::1::5::978300275\n"  # 9: user id
)

MOVIES_DAT = (
    "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
    "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
    "2::Caf\u00e9 Society: \u00c9t\u00e9 (2016)::(no genres listed)\n"
    "3::Broken::Drama::Extra\n"  # 4: four fields
    "x4::Bad Id (1999)::Drama\n"  # 5: id
    "5::  Spaced   Title  ::Drama| Comedy\n"
    "6::   ::Drama\n"  # 7: empty title
    "661::A repeated id::Drama\n"
)


def test_ml1m_dat_files_with_bad_lines(tmp_path):
    ratings = _write(tmp_path / "ratings.dat", RATINGS_DAT)
    movies = _write(tmp_path / "movies.dat", MOVIES_DAT, "latin-1")
    skips = SkipLog()
    src = _source(skips, interactions=ratings, items=movies)
    assert src.interactions().to_pylist() == [
        {"user_id": "1", "item_id": "1193", "rating": 5.0, "timestamp": 978300760},
        {"user_id": "1", "item_id": "661", "rating": 3.0, "timestamp": 978302109},
        {"user_id": "3", "item_id": "1193", "rating": 4.5, "timestamp": 978300275},
    ]
    assert skips.counts == {"bad_lines": 5}
    assert [e.split(": ", 1)[0] for e in skips.examples] == [f"{ratings}:{n}" for n in (4, 5, 7, 8, 9)]
    assert skips.examples[1].endswith(
        "expected 4 fields (user, movie, rating, timestamp) separated by ::, found 3"
    )

    items_skips = SkipLog()
    src.skips = items_skips
    items = src.items(pa.array(["1193", "661", "2", "5", "6", "3", "x4"]))
    assert items.to_pylist() == [
        {"item_id": "1193", "title": "One Flew Over the Cuckoo's Nest (1975)", "categories": ["Drama"]},
        {
            "item_id": "661",
            "title": "James and the Giant Peach (1996)",
            "categories": ["Animation", "Children's", "Musical"],
        },
        {"item_id": "2", "title": "Caf\u00e9 Society: \u00c9t\u00e9 (2016)", "categories": None},
        {"item_id": "5", "title": "Spaced Title", "categories": ["Drama", "Comedy"]},
    ]
    assert items_skips.counts == {"bad_lines": 3}
    assert [e.split(": ", 1)[0] for e in items_skips.examples] == [f"{movies}:{n}" for n in (4, 5, 7)]


def test_strict_mode_names_the_first_bad_line(tmp_path):
    ratings = _write(tmp_path / "ratings.dat", RATINGS_DAT)
    with pytest.raises(PrepError) as e:
        _source(SkipLog(strict=True), interactions=ratings).interactions()
    assert (e.value.path, e.value.line) == (str(ratings), 4)
    assert 'movie id "x" is not an integer' in str(e.value)
    movies = _write(tmp_path / "movies.dat", MOVIES_DAT, "latin-1")
    with pytest.raises(PrepError) as e:
        _source(SkipLog(strict=True), interactions=ratings, meta=movies).items(pa.array(["1"]))
    assert (e.value.path, e.value.line) == (str(movies), 4)


def test_gzip_and_several_files_keep_file_order(tmp_path):
    first = _write(tmp_path / "a.dat", "9::1::5::10\n9::2::4::20\n")
    second = tmp_path / "b.dat.gz"
    with gzip.open(second, "wt") as f:
        f.write("8::1::3::30\nbroken\n")
    skips = SkipLog()
    table = _source(skips, interactions=[first, second]).interactions()
    assert table.column("user_id").to_pylist() == ["9", "9", "8"]
    assert table.column("timestamp").to_pylist() == [10, 20, 30]
    assert skips.examples == [
        f"{second}:2: expected 4 fields (user, movie, rating, timestamp) separated by ::, found 1"
    ]


def test_truncated_gzip_and_unreadable_files_are_located(tmp_path):
    whole = gzip.compress(b"".join(b"%d::1::5::978300760\n" % u for u in range(5000)))
    cut = tmp_path / "ratings.dat.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(PrepError) as e:
        _source(interactions=cut).interactions()
    assert e.value.path == str(cut) and e.value.line is not None and "truncated" in str(e.value)
    odd = _write(tmp_path / "odd.txt", "1 1 5 978300760\n")
    with pytest.raises(PrepError, match="cannot tell the ratings format") as e:
        _source(interactions=odd).interactions()
    assert (e.value.path, e.value.line) == (str(odd), 1)
    good = _write(tmp_path / "ratings.csv", "1,1,5,978300760\n")
    with pytest.raises(PrepError, match="file given twice"):
        _source(interactions=[good, good]).interactions()


def test_many_bad_lines_are_counted_exactly(tmp_path):
    """Past the first 1,000 bad lines the rest of a file is counted in one entry; the total stays exact."""
    lines = [f"{u}::{u % 7}::4::978300760" if u % 151 == 0 else f"{u}::oops" for u in range(1, 3001)]
    ratings = _write(tmp_path / "ratings.dat", "\n".join(lines) + "\n")
    skips = SkipLog(max_examples=3)
    table = _source(skips, interactions=ratings).interactions()
    good = [u for u in range(1, 3001) if u % 151 == 0]
    assert table.column("user_id").to_pylist() == [str(u) for u in good]
    assert skips.counts == {"bad_lines": 3000 - len(good)}
    assert skips.examples == [
        f"{ratings}:{n}: expected 4 fields (user, movie, rating, timestamp) separated by ::, found 2"
        for n in (1, 2, 3)
    ]


# ---------------------------------------------------------------- hand-made ml-latest CSV


RATINGS_CSV = (
    "userId,movieId,rating,timestamp\n"
    "1,1,4.0,964982703\n"
    "1,11,4.5,964981247\n"
    "2,1,0.5,1445714835\n"
    "2,12,abc,1445714835\n"  # 5: rating
    "3,7,5,\n"  # 6: empty timestamp
    "3,7,5,1,9\n"  # 7: five fields
)

MOVIES_CSV = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
    '11,"American President, The (1995)",Comedy|Drama|Romance\n'
    '12,"Say ""Hi"", Bob (2001)",(no genres listed)\n'
    "13,Unquoted, comma (1990),Drama\n"  # 5: unquoted comma
    '14,"Unclosed (1990),Drama\n'  # 6: unclosed quote
    '15,Plain "quoted" word (2000),Drama\n'
)


def test_ml_latest_csv_files(tmp_path):
    ratings = _write(tmp_path / "ratings.csv", RATINGS_CSV)
    movies = _write(tmp_path / "movies.csv", MOVIES_CSV)
    skips = SkipLog()
    src = _source(skips, interactions=ratings, items=movies)
    table = src.interactions()
    assert table.to_pydict() == {
        "user_id": ["1", "1", "2"],
        "item_id": ["1", "11", "1"],
        "rating": [4.0, 4.5, 0.5],
        "timestamp": [964982703, 964981247, 1445714835],
    }
    assert skips.counts == {"bad_lines": 3}
    assert [e.split(": ", 1)[0] for e in skips.examples] == [f"{ratings}:{n}" for n in (5, 6, 7)]
    items = src.items(pa.array(["1", "11", "12", "13", "14", "15"]))
    assert items.to_pylist() == [
        {
            "item_id": "1",
            "title": "Toy Story (1995)",
            "categories": ["Adventure", "Animation", "Children", "Comedy", "Fantasy"],
        },
        {
            "item_id": "11",
            "title": "American President, The (1995)",
            "categories": ["Comedy", "Drama", "Romance"],
        },
        {"item_id": "12", "title": 'Say "Hi", Bob (2001)', "categories": None},
        {"item_id": "15", "title": 'Plain "quoted" word (2000)', "categories": ["Drama"]},
    ]
    assert skips.counts == {"bad_lines": 5}
    assert skips.examples[-2:] == [
        f"{movies}:{n}: expected movieId,title,genres (a title holding a comma must be in double quotes)"
        for n in (5, 6)
    ]


def test_no_items_file_means_no_item_fields(tmp_path):
    ratings = _write(tmp_path / "ratings.csv", RATINGS_CSV)
    assert _source(interactions=ratings).items(pa.array(["1"])) is None


# ---------------------------------------------------------------- mmprep build end to end


def _kcore_reference(df: pd.DataFrame, k_user: int, k_item: int) -> tuple[pd.DataFrame, int]:
    """Iterative k-core written out with pandas: drop users and items under k together, until nothing changes."""
    passes = 0
    while True:
        user_deg = df.groupby("user")["item"].transform("size")
        item_deg = df.groupby("item")["user"].transform("size")
        keep = (user_deg >= k_user) & (item_deg >= k_item)
        if keep.all():
            return df, passes
        df = df[keep]
        passes += 1


def test_build_ml100k_end_to_end(ml100k, tmp_path):
    out = tmp_path / "ml100k"
    result = CliRunner().invoke(
        main,
        [
            "build", "--source", "movielens",
            "--input", f"interactions={ml100k / 'u.data'}", "--input", f"meta={ml100k / 'u.item'}",
            "--k-user", "5", "--k-item", "5", "--out", str(out), "--quiet",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ref, _ = _kcore_reference(_pandas_ratings(ml100k), 5, 5)
    assert not ref.duplicated(["user", "item"]).any()
    ds = load_dataset(out)
    c = ds.manifest["counts"]
    assert (c["raw_records"], c["after_dedupe"]) == (100_000, 100_000)
    assert (ds.n_users, ds.n_items, c["interactions"]) == (
        ref["user"].nunique(),
        ref["item"].nunique(),
        len(ref),
    )
    assert (ds.n_users, ds.n_items, c["interactions"]) == (943, 1349, 99287)
    assert verify_dataset(out) == []
    # first-appearance id order over the k-cored stream
    assert ds.users.column("user_id").to_pylist() == pd.unique(ref["user"]).tolist()
    item_ids = pd.unique(ref["item"]).tolist()
    assert ds.items.column("item_id").to_pylist() == item_ids
    titles = pd.read_csv(ml100k / "u.item", sep="|", dtype=str, encoding="utf-8").set_index("item")["title"]
    assert ds.items.column("title").to_pylist() == titles.loc[item_ids].str.strip().tolist()
    inter = ds.interactions()
    assert np.bincount(inter.item_idx).min() >= 5 and np.bincount(inter.user_idx).min() >= 5
    assert np.isin(inter.rating, [1, 2, 3, 4, 5]).all()


def test_build_strict_fails_on_the_first_bad_line(tmp_path):
    ratings = _write(tmp_path / "ratings.dat", RATINGS_DAT)
    result = CliRunner().invoke(
        main,
        ["build", "--source", "movielens", "--input", f"interactions={ratings}", "--strict",
         "--k-user", "1", "--k-item", "1", "--out", str(tmp_path / "out"), "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert f"{ratings}:4: movie id" in result.output
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- recipes


@pytest.mark.parametrize(
    "name",
    [
        "movielens-100k",
        "movielens-1m",
        "ml-latest-small",
    ],
)
def test_recipes_use_the_source_roles(name):
    recipe = load_recipe(name)
    assert recipe.source == "movielens"
    roles = {f.role for f in recipe.files}
    assert roles == {"interactions", "items"} and roles <= set(MovieLensSource.roles)


def test_build_ml100k_from_its_recipe(ml100k, tmp_path):
    out = tmp_path / "rec"
    result = CliRunner().invoke(
        main, ["build", "--dataset", "movielens-100k", "--raw-dir", str(ml100k), "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    m = load_dataset(out).manifest
    assert (m["counts"]["users"], m["counts"]["items"], m["counts"]["interactions"]) == (943, 1349, 99287)
    assert [f["role"] for f in m["source"]["files"]] == ["interactions", "items"]
    assert m["recipe"]["name"] == "movielens-100k"
