"""`mmprep build` on hostile input: empty files, the wrong --source, impossible options, ids that are not
strings. Each is one line on stderr naming the file (and line) and the problem, exit 2 (issue 13)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from tests.mmprep.oneline import one_line_error, run_cli
from tests.paths import REPO, SHARED_DATA

SAMPLE = REPO / "data" / "All_Beauty_5.json.gz"


def _build(tmp_path, source: str, path, *extra: object):
    return run_cli(
        "build",
        "--source",
        source,
        "--input",
        f"interactions={path}",
        "--out",
        tmp_path / "o",
        "--quiet",
        *extra,
    )


def test_empty_input_names_the_file_even_at_k1(tmp_path):
    empty = tmp_path / "All_Beauty_5.json"
    empty.write_text("\n\n")
    line = one_line_error(_build(tmp_path, "amazon2018", empty, "--k-user", 1, "--k-item", 1), str(empty))
    assert "no interaction records" in line and "k-core" not in line


@pytest.mark.parametrize(
    ("source", "first_problem"),
    [("movielens", "expected 4 fields"), ("netflix", 'rating line before any "<movie_id>:" header')],
)
def test_wrong_source_says_every_record_was_rejected(tmp_path, source, first_problem):
    result = _build(tmp_path, source, SAMPLE, "--k-user", 1, "--k-item", 1)
    line = one_line_error(result, str(SAMPLE), "every record was rejected", "5,269 bad lines", "line 1:")
    assert first_problem in line and f"--source {source}" in line and "k-core" not in line


def test_movielens_file_read_as_amazon_json(tmp_path):
    ratings = SHARED_DATA / "movielens-100k" / "u.data"
    if not ratings.is_file():
        pytest.skip("../shared/data is not available")
    line = one_line_error(_build(tmp_path, "amazon2018", ratings), str(ratings), "100,001 bad lines")
    assert "line 1: malformed JSON" in line


def test_kcore_that_removes_everything_keeps_its_message_with_counts(tmp_path):
    line = one_line_error(_build(tmp_path, "amazon2018", SAMPLE, "--k-user", 100))
    assert "no interactions left after the k-core filter" in line
    assert "5,269 records read, 4,092 after dedupe" in line and "k_user=100" in line


def test_rating_filter_that_removes_everything_says_so(tmp_path):
    line = one_line_error(_build(tmp_path, "amazon2018", SAMPLE, "--min-rating", 6))
    assert "no interactions rated at least 6.0" in line


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("--k-user", "-3"), "--k-user must be 0 or more, got -3"),
        (("--k-item", "-1"), "--k-item must be 0 or more, got -1"),
        (("--val-ratio", "0.9", "--test-ratio", "0.9"), "val_ratio + test_ratio must be below 1"),
        (("--val-ratio", "0.5", "--test-ratio", "0.5"), "val_ratio + test_ratio must be below 1"),
        (("--test-ratio", "1.5"), "--test-ratio must be in [0, 1), got 1.5"),
        (("--val-ratio", "-0.1"), "--val-ratio must be in [0, 1), got -0.1"),
    ],
)
def test_impossible_options_are_refused(tmp_path, args, problem):
    one_line_error(_build(tmp_path, "amazon2018", SAMPLE, *args), problem)
    assert not (tmp_path / "o").exists()


def test_recipe_with_impossible_ratios_is_refused(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\nsource: amazon2018\nfiles:\n  interactions: [All_Beauty_5.json.gz]\n"
        "split: {val_ratio: 0.6, test_ratio: 0.4}\n"
    )
    result = run_cli("build", "--dataset", recipe, "--raw-dir", REPO / "data", "--out", tmp_path / "o")
    one_line_error(result, "val_ratio + test_ratio must be below 1")


def test_ids_that_are_numbers_are_coerced_and_objects_are_rejected_with_their_line(tmp_path):
    records = [
        {"reviewerID": 123, "asin": "A", "overall": 5, "unixReviewTime": 1},
        {"reviewerID": "123", "asin": "B", "overall": 4, "unixReviewTime": 2},
        {"reviewerID": "u2", "asin": {"id": "A"}, "overall": 3, "unixReviewTime": 3},
        {"reviewerID": ["u3"], "asin": "A", "overall": 3, "unixReviewTime": 3},
        {"reviewerID": "u2", "asin": 7, "overall": 3, "unixReviewTime": 4},
        {"reviewerID": "u2", "asin": "A", "overall": 3, "unixReviewTime": 5},
    ]
    path = tmp_path / "reviews.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = _build(
        tmp_path, "amazon2018", path, "--k-user", 1, "--k-item", 1, "--val-ratio", 0, "--test-ratio", 0
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["skipped"]["counts"] == {"bad_lines": 2}
    assert manifest["skipped"]["examples"] == [
        f"{path}:3: asin is object (expected a string or a number)",
        f"{path}:4: reviewerID is array (expected a string or a number)",
    ]
    users = pq.read_table(tmp_path / "o" / "users.parquet").column(-1).to_pylist()
    items = pq.read_table(tmp_path / "o" / "items.parquet").column("item_id").to_pylist()
    assert sorted(users) == ["123", "u2"] and sorted(items) == ["7", "A", "B"]
    strict = _build(tmp_path, "amazon2018", path, "--strict", "--overwrite")
    one_line_error(strict, f"{path}:3:", "asin is object")
