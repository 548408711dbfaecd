"""benchmarks/encoder.py: the measured encoders give the codes of one first-appearance encoding of the whole
stream, and every step of the encoder is timed."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pyarrow as pa

from mmprep.filter.encode import SLICE_ROWS, Vocabulary, encode_first_appearance
from tests.paths import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
_spec = importlib.util.spec_from_file_location("encoder_bench", REPO / "benchmarks" / "encoder.py")
encoder_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(encoder_bench)


def test_measured_codes_equal_one_encoding_of_the_whole_stream_and_steps_are_timed(tmp_path):
    n, batch_rows = 60_000, 5_000  # 12 batches: a growing table, rehashed on the way
    row, user_codes, item_codes = encoder_bench.measure(n, batch_rows)
    batches = encoder_bench.id_batches(n, batch_rows)
    want_users, user_vocab = encode_first_appearance(pa.chunked_array([b[0] for b in batches]))
    want_items, item_vocab = encode_first_appearance(pa.chunked_array([b[1] for b in batches]))
    np.testing.assert_array_equal(user_codes, want_users)
    np.testing.assert_array_equal(item_codes, want_items)
    assert (row["rows"], row["batches"]) == (n, 12)
    assert (row["distinct_users"], row["distinct_items"]) == (len(user_vocab), len(item_vocab))
    assert set(row["steps_cpu_s"]) == {"pack", "find", "insert", "rehash"}
    assert row["steps_ids"]["pack"] == 2 * n
    # a run of one id (the dump is grouped by product) is looked up once; every distinct id is inserted once,
    # with the rows of its slice that repeat it
    distinct = len(user_vocab) + len(item_vocab)
    assert distinct <= row["steps_ids"]["insert"] <= row["steps_ids"]["find"] < 2 * n
    # the timing wrappers are removed afterwards
    assert all("timed" not in getattr(Vocabulary, m).__name__ for m, _ in encoder_bench.STEPS.values())

    out = tmp_path / "encoder.json"
    assert encoder_bench.main(["--sizes", "20000", "--batch-rows", "5000", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["rows"][0]["rows"] == 20_000 and doc["slice_rows"] == SLICE_ROWS
