"""`mmprep build` end to end through the CLI: the bundled real sample, hand-made dumps, bad input, atomicity."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from click.testing import CliRunner

from mmprep.cli import main
from mmprep.dataset import load_dataset, verify_dataset
from tests.paths import REPO

SAMPLE_DIR = REPO / "data"


def _run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _lattice_sizes(n: int) -> tuple[int, int]:
    """(val, test) of LATTICE build_data.py for a user with n >= 3 interactions, written out by hand."""
    held_out = 2 if n < 10 else int(0.2 * n)
    return held_out - held_out // 2, held_out // 2


@pytest.fixture(scope="module")
def beauty(tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "all-beauty"
    _run("build", "--dataset", "all-beauty", "--raw-dir", SAMPLE_DIR, "--out", out, "--quiet")
    return out


def test_bundled_sample_builds_with_exact_counts(beauty):
    ds = load_dataset(beauty)
    m = ds.manifest
    # 5,269 reviews, 1,177 repeated (user, item) pairs, then an iterative 5-core that needs 13 passes
    assert m["counts"]["raw_records"] == 5269
    assert m["counts"]["after_dedupe"] == 4092
    assert m["skipped"]["counts"] == {"duplicates": 1177}
    assert m["counts"]["kcore_iterations"] == 13
    assert (ds.n_users, ds.n_items, m["counts"]["interactions"]) == (137, 24, 686)
    assert verify_dataset(beauty) == []
    inter = ds.interactions()
    assert np.bincount(inter.user_idx).min() >= 5 and np.bincount(inter.item_idx).min() >= 5
    assert (
        m["source"]["files"][0]["sha256"]
        == "8e49737fefaec9290187c69bf92889452df8be0ab5e36c9476520d6639683279"
    )


def test_bundled_sample_split_follows_the_protocol(beauty):
    ds = load_dataset(beauty)
    splits = ds.splits("warm")
    degree = np.bincount(ds.interactions().user_idx, minlength=ds.n_users)
    expected = np.array([_lattice_sizes(n) for n in degree])
    assert ds.manifest["splits"]["warm"]["promoted"] == {"users": 0, "items": 0}
    assert np.array_equal(np.bincount(splits["val"].user_idx, minlength=ds.n_users), expected[:, 0])
    assert np.array_equal(np.bincount(splits["test"].user_idx, minlength=ds.n_users), expected[:, 1])
    assert sum(len(s) for s in splits.values()) == 686
    train_items = set(splits["train"].item_idx.tolist())
    assert set(splits["val"].item_idx.tolist()) <= train_items
    assert set(splits["test"].item_idx.tolist()) <= train_items
    texts = ds.items.column("review_text").to_pylist()
    assert all(t and len(t) > 20 for t in texts)


def test_build_is_deterministic_and_seed_dependent(beauty, tmp_path):
    again = tmp_path / "again"
    other = tmp_path / "other"
    _run("build", "--dataset", "all-beauty", "--raw-dir", SAMPLE_DIR, "--out", again, "--quiet")
    _run(
        "build", "--dataset", "all-beauty", "--raw-dir", SAMPLE_DIR, "--out", other, "--quiet", "--seed", "7"
    )

    def hashes(d):
        return {f["path"]: f["sha256"] for f in json.loads((d / "manifest.json").read_text())["files"]}

    assert hashes(again) == hashes(beauty)
    h_other = hashes(other)
    assert h_other["interactions.parquet"] == hashes(beauty)["interactions.parquet"]
    assert h_other["splits/test.parquet"] != hashes(beauty)["splits/test.parquet"]


def _write_reviews(path, rows, bad_lines=()):
    lines = [
        json.dumps({"reviewerID": u, "asin": i, "overall": r, "unixReviewTime": t}) for u, i, r, t in rows
    ]
    for pos, text in bad_lines:
        lines.insert(pos, text)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def _grid_rows(n_users, n_items):
    """Every user rates every item once (a complete bipartite block)."""
    return [
        (f"U{u}", f"I{i}", 1.0 + (u + i) % 5, 1_000_000 + 10 * (u * n_items + i))
        for u in range(n_users)
        for i in range(n_items)
    ]


def test_hand_made_dump_kcore_dedupe_and_rating_filter(tmp_path):
    rows = _grid_rows(6, 6)  # 36 interactions, every degree 6
    rows += [("U0", "I0", 5.0, 1)]  # a duplicate pair
    rows += [("LONER", "I0", 5.0, 2), ("U1", "RARE", 5.0, 3)]  # removed by the 2-core
    dump = tmp_path / "reviews_Toy_5.json.gz"
    _write_reviews(dump, rows)
    out = tmp_path / "toy"
    _run(
        "build",
        "--source",
        "amazon2014",
        "--input",
        f"interactions={dump}",
        "--out",
        out,
        "--k-user",
        2,
        "--k-item",
        2,
        "--item-text",
        "none",
        "--quiet",
    )
    m = load_dataset(out).manifest
    assert (m["counts"]["raw_records"], m["counts"]["after_dedupe"]) == (39, 38)
    assert (m["counts"]["users"], m["counts"]["items"], m["counts"]["interactions"]) == (6, 6, 36)
    assert load_dataset(out).users.column("user_id").to_pylist() == [f"U{u}" for u in range(6)]
    # ratings >= 4 keep (u + i) % 5 in {3, 4}: 14 of the 36 pairs; a 1-core keeps them all
    out4 = tmp_path / "toy4"
    _run(
        "build",
        "--source",
        "amazon2014",
        "--input",
        f"interactions={dump}",
        "--out",
        out4,
        "--k-user",
        1,
        "--k-item",
        1,
        "--min-rating",
        4,
        "--item-text",
        "none",
        "--quiet",
    )
    m4 = load_dataset(out4).manifest
    expected = sum(1 for u in range(6) for i in range(6) if (u + i) % 5 >= 3) + 2  # + LONER and RARE (5.0)
    assert m4["counts"]["interactions"] == expected


def test_bad_line_is_skipped_and_counted_or_fails_with_strict(tmp_path):
    dump = tmp_path / "reviews_Toy_5.json.gz"
    _write_reviews(dump, _grid_rows(5, 5), bad_lines=[(3, '{"reviewerID": "U9", "asin": ')])
    out = tmp_path / "toy"
    _run(
        "build",
        "--source",
        "amazon2014",
        "--input",
        f"interactions={dump}",
        "--out",
        out,
        "--item-text",
        "none",
        "--quiet",
    )
    assert load_dataset(out).manifest["skipped"]["counts"].get("bad_lines") == 1
    result = _run(
        "build",
        "--source",
        "amazon2014",
        "--input",
        f"interactions={dump}",
        "--out",
        tmp_path / "s",
        "--item-text",
        "none",
        "--strict",
        "--quiet",
        ok=False,
    )
    assert result.exit_code == 2
    assert f"{dump}:4" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s").exists()


def test_truncated_gzip_is_one_line_error(tmp_path):
    dump = tmp_path / "reviews_Toy_5.json.gz"
    _write_reviews(dump, _grid_rows(30, 30))
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) // 2])
    result = _run(
        "build",
        "--source",
        "amazon2014",
        "--input",
        f"interactions={dump}",
        "--out",
        tmp_path / "o",
        "--item-text",
        "none",
        ok=False,
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("mmprep: error")]
    assert len(lines) == 1 and str(dump) in lines[0] and "truncated" in lines[0]
    assert not (tmp_path / "o").exists()


def test_empty_after_kcore_and_missing_file(tmp_path):
    dump = tmp_path / "reviews_Toy_5.json.gz"
    _write_reviews(dump, _grid_rows(3, 3))
    result = _run(
        "build",
        "--source",
        "amazon2014",
        "--input",
        f"interactions={dump}",
        "--out",
        tmp_path / "o",
        "--item-text",
        "none",
        ok=False,
    )
    assert result.exit_code == 2 and "no interactions left after the k-core filter" in result.output
    result = _run("build", "--dataset", "baby", "--raw-dir", tmp_path, "--out", tmp_path / "o", ok=False)
    assert (
        result.exit_code == 2 and "reviews_Baby_5.json.gz" in result.output and "not found" in result.output
    )


def test_interrupted_build_leaves_no_output(tmp_path, monkeypatch):
    import mmprep.build

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mmprep.build, "interaction_pieces", interrupted)
    out = tmp_path / "o"
    result = _run(
        "build", "--dataset", "all-beauty", "--raw-dir", SAMPLE_DIR, "--out", out, "--quiet", ok=False
    )
    assert result.exit_code == 130
    assert list(tmp_path.iterdir()) == []


def test_temporal_split_on_the_sample(tmp_path):
    out = tmp_path / "t"
    _run(
        "build",
        "--dataset",
        "all-beauty",
        "--raw-dir",
        SAMPLE_DIR,
        "--out",
        out,
        "--split",
        "temporal",
        "--quiet",
    )
    splits = load_dataset(out).splits("warm")
    train, test = splits["train"], splits["test"]
    last_train = np.zeros(137, dtype=np.int64)
    np.maximum.at(last_train, train.user_idx, train.timestamp)
    # every held-out test interaction is no earlier than the user's training interactions
    assert (test.timestamp >= last_train[test.user_idx]).all()


def test_import_recipe_reproduces_published_counts(shared_data, tmp_path):
    out = tmp_path / "tiktok"
    result = _run(
        "build", "--dataset", "tiktok-import", "--raw-dir", shared_data / "tiktok-mmssl", "--out", out
    )
    assert "matches the published counts" in result.output
    ds = load_dataset(out)
    assert (ds.n_users, ds.n_items) == (9308, 6710)
    assert {k: len(v) for k, v in ds.splits("warm").items()} == {"train": 59541, "val": 3051, "test": 6130}
    assert ds.modalities() == ["audio", "image"]


def test_unknown_input_role_is_rejected(tmp_path):
    result = _run(
        "build",
        "--source",
        "amazon2014",
        "--input",
        f"movies={SAMPLE_DIR / 'All_Beauty_5.json.gz'}",
        "--out",
        tmp_path / "o",
        ok=False,
    )
    assert result.exit_code == 2
    assert "source amazon2014 has no input role 'movies' (roles: interactions, meta)" in result.output


def test_filesystem_problem_is_one_line_not_a_traceback(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _run(
        "build", "--dataset", "all-beauty", "--raw-dir", SAMPLE_DIR, "--out", blocker / "out", ok=False
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"mmprep: error: {blocker}: File exists" in result.output
