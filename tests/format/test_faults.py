"""Faults around writing datasets: tampered files, concurrent writers, killed writers, NaN features, full disks."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from mmformat import manifest as manifest_module
from mmformat.atomic import write_parquet
from mmprep.cli import main as mmprep_main
from mmprep.dataset import verify_dataset
from mmprep.features.amazon_b import record_dtype
from tests.format.helpers import write_small
from tests.paths import REPO

BUILD = ["build", "--dataset", "all-beauty", "--raw-dir", str(REPO / "data"), "--quiet"]

# runs the real mmprep CLI in a child process; the finished dataset waits (marker file written) before its rename
BLOCKED_CHILD = """
import sys, time
import mmformat.atomic as atomic
rename = atomic.replace_dir
def wait_then_rename(tmp, target):
    open(sys.argv[1], "w").close()
    time.sleep(float(sys.argv[2]))
    rename(tmp, target)
atomic.replace_dir = wait_then_rename
from mmprep.cli import main
main(sys.argv[3:], prog_name="mmprep")
"""


def _mmprep(*args: str):
    result = CliRunner().invoke(mmprep_main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _one_line(result) -> str:
    """The output's only line, progress bars (tqdm, ``%|``) aside."""
    lines = [line for line in result.output.strip().splitlines() if "%|" not in line]
    assert len(lines) == 1, result.output
    return lines[0]


def _start_blocked_build(tmp_path, out, wait: float = 120.0) -> tuple[subprocess.Popen, pathlib.Path]:
    marker = tmp_path / f"ready-{out.name}"
    child = subprocess.Popen(
        [sys.executable, "-c", BLOCKED_CHILD, str(marker), str(wait), *BUILD, "--out", str(out)],
        env=_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None, child.stderr.read()
        assert time.monotonic() < deadline, "the child build never reached its rename"
        time.sleep(0.05)
    return child, marker


def _leftovers(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def small(tmp_path):
    root = tmp_path / "small"
    write_small(root)
    return root


def _tamper_users(root) -> None:
    table = pq.read_table(root / "users.parquet")
    table = table.set_column(1, "user_id", pa.array(["ua", "ub", "UC"]))  # same size: only the sha256 tells
    write_parquet(root / "users.parquet", table)


def _b_file(path, ids: list[str], rng) -> np.ndarray:
    feats = rng.standard_normal((len(ids), 4096)).astype("<f4")
    arr = np.zeros(len(ids), dtype=record_dtype(4096))
    for i, item in enumerate(ids):
        arr[i] = (item.ljust(10).encode(), feats[i])
    arr.tofile(path)
    return feats


def test_updates_refuse_a_tampered_dataset_and_hash_only_what_they_wrote(small, tmp_path, monkeypatch):
    hashed = []
    describe = manifest_module.describe_file
    monkeypatch.setattr(
        manifest_module, "describe_file", lambda p, root=None: hashed.append(p) or describe(p, root)
    )
    result = _mmprep("graph", small, "--modality", "image", "--k", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert [p.relative_to(small).as_posix() for p in hashed] == ["graphs/knn_image_k2.parquet"]
    assert verify_dataset(small) == []

    _tamper_users(small)
    before = (small / "manifest.json").read_bytes()
    b_file = tmp_path / "image.b"
    _b_file(b_file, ["i0", "i1", "i2", "i3"], np.random.default_rng(0))
    expected = f"mmprep: error: {small}: users.parquet: sha256 differs from manifest; refusing to update"
    for args in (
        ["graph", small, "--modality", "image", "--k", "1", "--device", "cpu"],
        ["cold-start", small, "--cold-ratio", "0.5"],
        ["features", small, "--modality", "image", "--name", "image_b", "--b-file", b_file],
    ):
        result = _mmprep(*args)
        assert result.exit_code == 2 and _one_line(result).startswith(expected), result.output
    assert (small / "manifest.json").read_bytes() == before
    assert not (small / "graphs" / "knn_image_k1.parquet").exists() and not (small / "cold").exists()
    assert not (small / "features" / "image_b.npy").exists()
    assert verify_dataset(small) == ["users.parquet: sha256 differs from manifest"]


def test_graph_on_nan_features_is_refused_naming_file_and_row(tmp_path):
    image = np.arange(8, dtype=np.float32).reshape(4, 2)
    image[1, 0] = np.nan
    root = tmp_path / "nan"
    write_small(root, image=image)
    result = _mmprep("graph", root, "--modality", "image", "--k", "2", "--device", "cpu")
    assert result.exit_code == 2
    assert _one_line(result) == (
        f"mmprep: error: {root}/features/image.npy: row 1 (item_idx 1) holds NaN or infinite values"
    )
    assert not (root / "graphs").exists()


def test_a_second_writer_of_the_same_output_fails_at_once(tmp_path):
    out = tmp_path / "beauty"
    child, _ = _start_blocked_build(tmp_path, out, wait=5.0)
    try:
        start = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-c", "from mmprep.cli import main; main()", *BUILD, "--out", str(out)],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2 and time.monotonic() - start < 60
        assert second.stderr == f"mmprep: error: another mmprep is writing {out} (pid {child.pid})\n"
    finally:
        assert child.wait(timeout=120) == 0, child.stderr.read()
    assert verify_dataset(out) == [] and _leftovers(tmp_path) == []


def test_a_build_killed_with_sigkill_is_cleaned_by_the_rerun(tmp_path):
    out = tmp_path / "beauty"
    child, _ = _start_blocked_build(tmp_path, out)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    left = _leftovers(tmp_path)
    assert any(name.startswith(".beauty.tmp-") for name in left) and not out.exists()
    result = _mmprep(*BUILD, "--out", out)
    assert result.exit_code == 0, result.output
    assert _leftovers(tmp_path) == [] and verify_dataset(out) == []


def test_sigterm_cleans_up_and_exits_143_with_one_line(tmp_path):
    out = tmp_path / "beauty"
    child, _ = _start_blocked_build(tmp_path, out)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=60) == 143
    assert child.stderr.read() == "mmprep: interrupted; no partial output was left behind (SIGTERM)\n"
    assert _leftovers(tmp_path) == [] and not out.exists()


def _enospc_on(monkeypatch, owner, attribute: str, when=lambda *a: True) -> None:
    original = getattr(owner, attribute)

    def full_disk(*args, **kwargs):
        if when(*args):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, attribute, full_disk)


def test_full_disk_during_import_keeps_the_old_dataset(tmp_path, monkeypatch):
    import scipy.sparse as sp

    src = tmp_path / "src"
    src.mkdir()
    for name, rows in (("trnMat.pkl", [0, 1, 2]), ("valMat.pkl", [0]), ("tstMat.pkl", [1])):
        with open(src / name, "wb") as f:
            pickle_dump(sp.coo_matrix((np.ones(len(rows)), (rows, [0, 1, 2][: len(rows)])), shape=(3, 3)), f)
    np.save(src / "image_feat.npy", np.eye(3, dtype=np.float32))
    out = tmp_path / "out"
    assert _mmprep("import", "--format", "diffmm", src, "--out", out).exit_code == 0
    before = (out / "manifest.json").read_bytes()
    _enospc_on(monkeypatch, np, "save")
    result = _mmprep("import", "--format", "diffmm", src, "--out", out, "--overwrite")
    assert result.exit_code == 2
    line = _one_line(result)
    assert line.startswith(f"mmprep: error: {out}.tmp") is False and "No space left on device" in line
    assert line.endswith("(free some space; nothing was replaced)") and "features/image" in line
    assert (out / "manifest.json").read_bytes() == before and verify_dataset(out) == []
    assert _leftovers(tmp_path) == []


def test_full_disk_in_the_final_features_write_keeps_everything(small, tmp_path, monkeypatch):
    b_file = tmp_path / "image.b"
    _b_file(b_file, ["i0", "i1", "i2", "i3"], np.random.default_rng(1))
    before = {p: p.read_bytes() for p in small.rglob("*") if p.is_file()}
    _enospc_on(monkeypatch, np, "save", lambda f, *a: "image_b" in getattr(f, "name", ""))
    result = _mmprep("features", small, "--modality", "image", "--name", "image_b", "--b-file", b_file)
    assert result.exit_code == 2
    line = _one_line(result)
    assert line.startswith(f"mmprep: error: {small}/features/image_b") and "No space left on device" in line
    assert {p: p.read_bytes() for p in small.rglob("*") if p.is_file()} == before
    assert verify_dataset(small) == []


def test_full_disk_writing_a_checkpoint_is_one_line(tmp_path, monkeypatch):
    from mmtrain.cli import main as mmtrain_main
    from tests.mmtrain.helpers import random_dataset

    root = random_dataset(tmp_path / "rand", n_users=30, n_items=20, per_user=5)
    _enospc_on(monkeypatch, pathlib.Path, "write_bytes", lambda p, *a: ".best.pt.tmp-" in p.name)
    out = tmp_path / "runs"
    args = ["--device", "cpu", "--set", "threads=1", "--set", "epochs=1", "--set", "tensorboard=false"]
    result = CliRunner().invoke(
        mmtrain_main,
        ["-q", "run", "--model", "mf", "--dataset", str(root), "--out", str(out), "--name", "r", *args],
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert _one_line(result) == (
        f"mmtrain: error: {out}/r/best.pt: No space left on device (free some space; nothing was replaced)"
    )
    assert [p.name for p in (out / "r").iterdir() if p.name.startswith(".")] == []


def pickle_dump(obj, f) -> None:
    import pickle

    pickle.dump(obj, f)


def test_manifest_of_a_refused_update_is_untouched(small):
    _tamper_users(small)
    manifest = json.loads((small / "manifest.json").read_text())
    result = _mmprep("graph", small, "--modality", "image", "--k", "2", "--device", "cpu")
    assert result.exit_code == 2 and json.loads((small / "manifest.json").read_text()) == manifest


def test_sigterm_inside_any_cli_command_runs_the_ctrl_c_cleanup(tmp_path):
    import click

    from mmformat.atomic import atomic_dir
    from mmformat.cli import UserErrorGroup

    class Group(UserErrorGroup):
        prog = "tool"

    @click.group(cls=Group)
    def cli() -> None:
        pass

    @cli.command()
    def write() -> None:
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "half").write_text("x")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # the handler raises before this ends

    before = signal.getsignal(signal.SIGTERM)
    result = CliRunner().invoke(cli, ["write"])
    assert result.exit_code == 143 and result.output == "tool: interrupted (SIGTERM)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [] and signal.getsignal(signal.SIGTERM) is before
