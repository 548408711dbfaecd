"""The Amazon 2014 / 2018 / 2023 readers on hand-made files in each release's exact layout, and the real 2018 dump."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pytest

from mmprep.errors import PrepError
from mmprep.sources.amazon_common import REVIEWS_PER_ITEM, clean_html
from mmprep.sources.base import SkipLog, SourceFiles, get_source
from tests.paths import REPO


def _gz(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _source(fmt, strict=False, **roles):
    skips = SkipLog(strict=strict)
    return get_source(fmt)(SourceFiles({k: list(v) for k, v in roles.items()}), skips), skips


def test_real_2018_dump_reads_every_review_in_file_order():
    src, skips = _source("amazon2018", interactions=[REPO / "data" / "All_Beauty_5.json.gz"])
    table = src.interactions()
    assert table.num_rows == 5269 and skips.counts == {}
    assert len(table.column("user_id").unique()) == 991
    assert len(table.column("item_id").unique()) == 85
    first = table.slice(0, 1).to_pylist()[0]
    assert first == {
        "user_id": "A3CIUOJXQ5VDQ2",
        "item_id": "B0000530HU",
        "rating": 5.0,
        "timestamp": 1472688000,
    }
    assert pa.compute.min(table.column("timestamp")).as_py() == 1095724800  # 2004-09-21 UTC


def test_2014_meta_is_parsed_as_literals_never_evaluated(tmp_path):
    reviews = _gz(
        tmp_path / "reviews_Toy_5.json.gz",
        [json.dumps({"reviewerID": "U1", "asin": a, "overall": 4.0, "unixReviewTime": 10}) for a in "ABCD"],
    )
    marker = tmp_path / "pwned"
    meta = _gz(
        tmp_path / "meta_Toy.json.gz",
        [
            "{'asin': 'A', 'title': 'Blue &amp; <b>Green</b>  Ball', 'brand': 'Acme', "
            "'categories': [['Toys', 'Balls'], ['Toys', 'Outdoor']], 'imUrl': 'http://x/a.jpg', 'price': 3.5}",
            "{'asin': 'Z', 'title': 'not wanted'}",
            f"{{'asin': 'B', 'title': __import__('os').system('touch {marker}')}}",
            "{'asin': 'C', 'description': \"Kid's <br/>toy\", 'related': {'also_bought': ['A']}}",
            "{'asin': 'A', 'title': 'a later duplicate'}",
        ],
    )
    src, skips = _source("amazon2014", interactions=[reviews], meta=[meta])
    items = src.items(pa.array(["A", "B", "C", "D"])).to_pylist()
    assert not marker.exists()
    assert skips.counts == {"bad_meta_lines": 1} and skips.examples[0].startswith(f"{meta}:3:")
    assert items == [
        {
            "item_id": "A",
            "title": "Blue & Green Ball",
            "brand": "Acme",
            "categories": ["Toys", "Balls", "Outdoor"],
            "description": None,
            "image_url": "http://x/a.jpg",
        },
        {
            "item_id": "C",
            "title": None,
            "brand": None,
            "categories": None,
            "description": "Kid's toy",
            "image_url": None,
        },
    ]


def test_ratings_csv_column_order_differs_between_releases(tmp_path):
    csv14 = tmp_path / "ratings_Toy.csv"
    csv14.write_text("U1,I1,5.0,100\nU2,I1,3.0,200\n")
    csv18 = tmp_path / "Toy.csv"
    csv18.write_text("I1,U1,5.0,100\nI2,U1,oops,200\nI3,U3,2.0,300\n")
    t14 = _source("amazon2014", interactions=[csv14])[0].interactions()
    assert t14.column("user_id").to_pylist() == ["U1", "U2"] and t14.column("item_id").to_pylist() == [
        "I1",
        "I1",
    ]
    src, skips = _source("amazon2018", interactions=[csv18])
    t18 = src.interactions()
    assert t18.column("user_id").to_pylist() == ["U1", "U3"] and t18.column("timestamp").to_pylist() == [
        100,
        300,
    ]
    assert skips.counts == {"bad_lines": 1} and skips.examples[0].startswith(f"{csv18}:2: rating")
    with pytest.raises(PrepError) as e:
        _source("amazon2018", strict=True, interactions=[csv18])[0].interactions()
    assert f"{csv18}:2" in str(e.value)


def test_2023_parent_asin_milliseconds_and_meta(tmp_path):
    reviews = _gz(
        tmp_path / "Toy.jsonl.gz",
        [
            json.dumps(
                {
                    "rating": 5.0,
                    "title": "Great",
                    "text": "Loved it",
                    "asin": "V1",
                    "parent_asin": "P1",
                    "user_id": "U1",
                    "timestamp": 1588687728923,
                    "images": [],
                }
            ),
            json.dumps(
                {
                    "rating": 2.0,
                    "title": "Meh",
                    "text": "",
                    "asin": "V2",
                    "parent_asin": "P1",
                    "user_id": "U2",
                    "timestamp": 1588687729999,
                }
            ),
            json.dumps({"rating": 1.0, "asin": "V3", "user_id": "U3", "timestamp": 1}),  # no parent_asin
        ],
    )
    meta = _gz(
        tmp_path / "meta_Toy.jsonl.gz",
        [
            json.dumps(
                {
                    "parent_asin": "P1",
                    "title": "Toy &quot;One&quot;",
                    "store": "Acme",
                    "categories": ["Toys & Games", "Balls"],
                    "description": ["<p>Round.</p>", "Bouncy."],
                    "images": [{"thumb": "t.jpg", "large": "l.jpg", "hi_res": None, "variant": "MAIN"}],
                }
            )
        ],
    )
    src, skips = _source("amazon2023", interactions=[reviews], meta=[meta])
    table = src.interactions()
    assert table.to_pylist() == [
        {"user_id": "U1", "item_id": "P1", "rating": 5.0, "timestamp": 1588687728},
        {"user_id": "U2", "item_id": "P1", "rating": 2.0, "timestamp": 1588687729},
    ]
    assert skips.counts == {"bad_lines": 1} and skips.examples[0] == f"{reviews}:3: missing field parent_asin"
    assert src.review_text(pa.array(["P1"])).to_pylist() == [
        {"item_id": "P1", "review_text": "Great. Loved it Meh"}
    ]
    assert src.items(pa.array(["P1"])).to_pylist() == [
        {
            "item_id": "P1",
            "title": 'Toy "One"',
            "brand": "Acme",
            "categories": ["Toys & Games", "Balls"],
            "description": "Round. Bouncy.",
            "image_url": "l.jpg",
        }
    ]


def test_2018_meta_with_html_strings_and_lists(tmp_path):
    meta = _gz(
        tmp_path / "meta_Toy.json.gz",
        [
            json.dumps(
                {
                    "asin": "A",
                    "title": "<span class='x'>Soft</span>\n Brush",
                    "brand": " Acme ",
                    "category": ["All Beauty", "<b></b>"],
                    "description": "Single string",
                    "imageURL": ["small.jpg"],
                    "imageURLHighRes": ["big.jpg"],
                }
            ),
            "{not json",
            json.dumps(
                {"asin": "B", "title": "Comb", "description": ["Line 1", "Line 2"], "imageURL": ["c.jpg"]}
            ),
        ],
    )
    src, skips = _source("amazon2018", meta=[meta])
    items = src.items(pa.array(["B", "A"])).to_pylist()
    assert skips.counts == {"bad_meta_lines": 1} and skips.examples[0].startswith(f"{meta}:2: malformed JSON")
    assert items == [
        {
            "item_id": "A",
            "title": "Soft Brush",
            "brand": "Acme",
            "categories": ["All Beauty"],
            "description": "Single string",
            "image_url": "big.jpg",
        },
        {
            "item_id": "B",
            "title": "Comb",
            "brand": None,
            "categories": None,
            "description": "Line 1 Line 2",
            "image_url": "c.jpg",
        },
    ]


def test_review_text_takes_the_first_reviews_of_each_item(tmp_path):
    n = REVIEWS_PER_ITEM + 5
    reviews = _gz(
        tmp_path / "reviews_Toy_5.json.gz",
        [
            json.dumps(
                {
                    "reviewerID": f"U{k}",
                    "asin": "A",
                    "summary": f"s{k}",
                    "reviewText": f"t{k}",
                    "overall": 5,
                    "unixReviewTime": k,
                }
            )
            for k in range(n)
        ],
    )
    src, _ = _source("amazon2014", interactions=[reviews])
    (row,) = src.review_text(pa.array(["A"])).to_pylist()
    assert row["review_text"] == " ".join(f"s{k}. t{k}" for k in range(REVIEWS_PER_ITEM))


def test_clean_html_on_arrow_arrays():
    out = clean_html(pa.array(["a<br>b", "  <i></i> ", None, "x &amp;amp; y", "5 &lt; 6 &#39;ok&#39;"]))
    assert out.to_pylist() == ["a b", None, None, "x &amp; y", "5 < 6 'ok'"]


def test_non_utf8_bytes_are_a_located_error(tmp_path):
    good = json.dumps({"reviewerID": "U1", "asin": "A", "overall": 5.0, "unixReviewTime": 1}).encode()
    bad = b'{"reviewerID": "U2", "asin": "B", "summary": "caf\xe9", "overall": 4.0, "unixReviewTime": 2}'
    dump = tmp_path / "reviews_Toy_5.json.gz"
    with gzip.open(dump, "wb") as f:
        f.write(good + b"\n" + good + b"\n" + bad + b"\n")
    with pytest.raises(PrepError) as e:
        _source("amazon2014", interactions=[dump])[0].interactions()
    assert str(e.value).startswith(f"{dump}:3:") and "utf-8" in str(e.value)
