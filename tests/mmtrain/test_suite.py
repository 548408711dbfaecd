"""mmtrain suite: trials named by config hash, serial and Ray runs agree, a killed driver resumes, selection on
validation, shipped suites expand, one-line errors."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from mmformat.hashing import sha256_file
from mmformat.manifest import content_sha256, update_manifest
from mmtrain.cli import main
from mmtrain.errors import TrainError
from mmtrain.suite import (
    Trial,
    expand_trials,
    load_suite,
    run_suite,
    suite_lock,
    trial_id,
    trial_status,
)
from mmtrain.suite_spec import SuiteSpec
from mmtrain.suite_tables import select
from tests.mmtrain.helpers import random_dataset, tiktok_subset
from tests.paths import REPO

SUITES = REPO / "recipes" / "suites"
FAST = {"device": "cpu", "threads": 1, "tensorboard": False, "batch_size": 4096}


def write_suite(path: Path, data: Path, **keys) -> Path:
    """A suite YAML: mf and lightgcn (recipe params), seeds 1 and 2, 2 epochs, on ``data``; ``keys`` replace."""
    doc = {
        "name": "t",
        "dataset": str(data),
        "models": ["mf", "lightgcn"],
        "grid": "none",
        "seeds": [1, 2],
        "budget": {"epochs": 2},
        "set": FAST,
        **keys,
    }
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    return tiktok_subset(tmp_path_factory.mktemp("data") / "tiktok-sub")


@pytest.fixture(scope="module")
def serial(subset, tmp_path_factory):
    """The 2-model x 2-seed x 2-epoch suite run serially once: (spec path, suite dir)."""
    root = tmp_path_factory.mktemp("serial")
    spec = write_suite(root / "suite.yaml", subset)
    return spec, run_suite(spec, root / "out", executor="serial")


def finals(suite_dir: Path) -> dict[str, dict]:
    return {
        p.parent.name: json.loads(p.read_text()) for p in sorted((suite_dir / "trials").glob("*/final.json"))
    }


def test_serial_suite_writes_trials_csv_and_selection(serial, subset):
    spec, suite_dir = serial
    results = finals(suite_dir)
    assert len(results) == 4
    digest = content_sha256(json.loads((subset / "manifest.json").read_text()))
    for tid, final in results.items():
        folder = suite_dir / "trials" / tid
        config = yaml.safe_load((folder / "config.yaml").read_text())
        assert tid == trial_id(config, digest)  # the folder is the hash of the resolved config + dataset
        assert final["epochs_run"] == 2 and config["epochs"] == 2 and config["valid_metric"] == "recall@20"
        info = json.loads((folder / "trial.json").read_text())
        assert info["status"] == "done" and info["seed"] == final["seed"] and info["model"] == final["model"]
        assert info["point"] == {} and info["stop_reason"] == final["stop_reason"] == "epochs"
        assert {"metrics.csv", "best.pt", "versions.json", "curve.png"} <= {p.name for p in folder.iterdir()}
        assert not (folder / tid).exists()  # the run's files were moved up into the trial folder
    rows = list(csv.DictReader((suite_dir / "trials.csv").open()))
    assert [r["status"] for r in rows] == ["done"] * 4
    assert [(r["model"], r["seed"]) for r in rows] == [
        ("mf", "1"),
        ("mf", "2"),
        ("lightgcn", "1"),
        ("lightgcn", "2"),
    ]
    assert list(rows[0])[:6] == ["trial_id", "model", "dataset", "point", "seed", "status"]
    assert list(rows[0])[-2:] == ["s_per_epoch", "peak_rss_mib"]
    for r in rows:
        final = results[r["trial_id"]]
        assert float(r["val_recall@20"]) == final["val"]["recall@20"]
        assert float(r["test_ndcg@20"]) == final["test"]["ndcg@20"]
        assert float(r["peak_rss_mib"]) > 0
    selection = json.loads((suite_dir / "selection.json").read_text())
    assert selection["metric"] == "recall@20" and set(selection["models"]) == {"mf", "lightgcn"}
    for model, chosen in selection["models"].items():
        vals = [results[t]["val"]["recall@20"] for t in chosen["trial_ids"]]
        assert len(vals) == 2 and chosen["val_mean"] == pytest.approx(np.mean(vals))
        assert chosen["val_std"] == pytest.approx(np.std(vals, ddof=1)) and chosen["complete"]
        assert {results[t]["model"] for t in chosen["trial_ids"]} == {model}
    assert yaml.safe_load((suite_dir / "suite.yaml").read_text())["seeds"] == [1, 2]
    # the report read the selection: the same trials per model, the others tested against the baseline
    board = json.loads((suite_dir / "leaderboard.json").read_text())
    assert {e["model"]: e["trial_ids"] for e in board["models"]} == {
        m: c["trial_ids"] for m, c in selection["models"].items()
    }
    assert board["baseline"] == "lightgcn" and (suite_dir / "report.html").is_file()
    # everything is done: a rerun trains nothing and the dry run says so
    result = CliRunner().invoke(main, ["suite", str(spec), "--out", str(suite_dir), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].endswith("4 done, 0 todo, 0 running, 0 failed")


def test_rerun_of_a_finished_suite_trains_nothing_and_writes_the_report(serial, monkeypatch):
    spec, suite_dir = serial
    # a driver killed after a trial's final.json but before its trial.json said done: the rerun repairs it
    info_path = next(suite_dir.glob("trials/*/trial.json"))
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "status": "running", "pid": 0}))
    before = {p: p.stat().st_mtime_ns for p in suite_dir.glob("trials/*/*") if p.is_file() and p != info_path}
    calls = []
    report = types.ModuleType("mmtrain.report")
    report.write_report = lambda path, baseline=None: calls.append((path, baseline)) or {}
    monkeypatch.setitem(sys.modules, "mmtrain.report", report)
    assert run_suite(spec, suite_dir, executor="serial") == suite_dir
    after = {p: p.stat().st_mtime_ns for p in suite_dir.glob("trials/*/*") if p.is_file() and p != info_path}
    assert after == before
    assert json.loads(info_path.read_text())["status"] == "done"
    assert json.loads(info_path.read_text())["stop_reason"] == "epochs"
    assert calls == [(suite_dir, "lightgcn")]


def test_the_same_data_imported_again_keeps_its_trials_and_changed_data_does_not(serial, tmp_path):
    spec, suite_dir = serial
    trials = expand_trials(load_suite(spec))
    done = [t.trial_id for t in trials]
    assert all(trial_status(suite_dir, t) == "done" for t in trials)
    # another import of the same files: another time, machine and command line; the trials are still done
    data = Path(load_suite(spec).datasets[0])
    again = shutil.copytree(data, tmp_path / "reimported")
    manifest = json.loads((again / "manifest.json").read_text())
    manifest["created_by"] = {
        **manifest["created_by"],
        "created_at": "2031-01-01T00:00:00+00:00",
        "platform": "x",
    }
    manifest["params"] = {**manifest.get("params", {}), "src_dir": "/elsewhere"}
    (again / "manifest.json").write_text(json.dumps(manifest, indent=2))
    assert sha256_file(again / "manifest.json") != sha256_file(data / "manifest.json")
    moved = write_suite(tmp_path / "again.yaml", again)
    reimported = expand_trials(load_suite(moved))
    assert [t.trial_id for t in reimported] == done
    assert all(trial_status(suite_dir, t) == "done" for t in reimported)
    # one data file changed (and the manifest updated to match): every trial is new
    features = again / "features" / "image.npy"
    values = np.load(features)
    values[0, 0] += 1.0
    np.save(features, values)
    update_manifest(again, manifest, [features.relative_to(again).as_posix()])
    changed = [t.trial_id for t in expand_trials(load_suite(moved))]
    assert not set(changed) & set(done) and len(changed) == len(done)


@pytest.mark.slow
def test_ray_workers_give_the_serial_results(serial, tmp_path):
    pytest.importorskip("ray")
    spec, serial_dir = serial
    out = run_suite(spec, tmp_path / "ray", executor="ray", cpus_per_trial=1)
    serial_results, ray_results = finals(serial_dir), finals(out)
    assert set(ray_results) == set(serial_results)  # same trial ids: same resolved configs
    for tid, final in ray_results.items():
        assert final["val"] == serial_results[tid]["val"] and final["test"] == serial_results[tid]["test"]
        assert final["best_epoch"] == serial_results[tid]["best_epoch"]
    pids = {json.loads(p.read_text())["pid"] for p in out.glob("trials/*/trial.json")}
    assert len(pids) == 4 and os.getpid() not in pids  # each trial ran in its own Ray worker process
    assert (
        json.loads((out / "selection.json").read_text())["models"]
        == json.loads((serial_dir / "selection.json").read_text())["models"]
    )


@pytest.mark.slow
def test_killed_driver_rerun_finishes_only_the_missing_trials(serial, tmp_path):
    spec, serial_dir = serial
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "mmtrain.cli",
        "-q",
        "suite",
        str(spec),
        "--out",
        str(out),
        "--executor",
        "serial",
    ]
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    # kill while a trial is mid-run: one trial finished and the next has written its first last.pt
    while driver.poll() is None and time.time() < deadline:
        if list(out.glob("trials/*/final.json")) and list(out.glob("trials/*/*/last.pt")):
            break
        time.sleep(0.02)
    interrupted = {p.parent.parent.name for p in out.glob("trials/*/*/last.pt")}
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert driver.returncode == -signal.SIGKILL
    done = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("trials/*/final.json")}
    assert 1 <= len(done) < 4
    listing = CliRunner().invoke(main, ["suite", str(spec), "--out", str(out), "--dry-run"]).stdout
    statuses = {line.split()[0]: line.split()[1] for line in listing.splitlines()[:-1]}
    assert {t for t, s in statuses.items() if s == "done"} == set(done)
    assert set(statuses.values()) == {"done", "todo"}  # the interrupted trial's process is dead: todo
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("trials/*/final.json")}
    assert len(after) == 4 and {t: after[t] for t in done} == done  # finished trials were not rerun
    resumed = {
        p.parent.name for p in out.glob("trials/*/trial.json") if json.loads(p.read_text()).get("resumed")
    }
    assert interrupted and resumed == interrupted  # the interrupted trial went on from its last.pt
    serial_results = finals(serial_dir)
    for tid, final in finals(out).items():  # resumed or restarted: the same numbers as the clean run
        assert final["test"] == serial_results[tid]["test"]
        assert final["val"] == serial_results[tid]["val"]


def test_dry_run_tells_running_from_interrupted(serial, tmp_path):
    spec, _ = serial
    trials = expand_trials(load_suite(spec))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for trial, pid in zip(trials, [os.getpid(), dead.pid], strict=False):
        folder = tmp_path / "trials" / trial.trial_id
        folder.mkdir(parents=True)
        info = trial.record("running", host=socket.gethostname(), pid=pid)
        (folder / "trial.json").write_text(json.dumps(info))
    listing = CliRunner().invoke(main, ["suite", str(spec), "--out", str(tmp_path), "--dry-run"]).stdout
    assert [line.split()[:2] for line in listing.splitlines()[:2]] == [
        [trials[0].trial_id, "running"],
        [trials[1].trial_id, "todo"],
    ]
    assert listing.splitlines()[-1].endswith("0 done, 3 todo, 1 running, 0 failed")


def test_tables_only_tabulates_the_finished_trials_without_training(serial, tmp_path, monkeypatch):
    spec, serial_dir = serial
    partial = tmp_path / "partial"
    shutil.copytree(serial_dir, partial)
    trials = expand_trials(load_suite(spec))
    for t in trials:  # lightgcn has not finished yet: one seed interrupted, the other never started
        if t.model == "lightgcn":
            shutil.rmtree(partial / "trials" / t.trial_id)
    (partial / "selection.json").unlink()
    (partial / "trials.csv").unlink()
    monkeypatch.setattr("mmtrain.suite_trials.run_trial", lambda *a, **k: pytest.fail("trained"))
    result = CliRunner().invoke(main, ["suite", str(spec), "--out", str(partial), "--tables-only"])
    assert result.exit_code == 0, result.output
    selection = json.loads((partial / "selection.json").read_text())["models"]
    assert selection == {"mf": json.loads((serial_dir / "selection.json").read_text())["models"]["mf"]}
    rows = list(csv.DictReader((partial / "trials.csv").open()))
    assert [r["status"] for r in rows if r["model"] == "lightgcn"] == ["todo", "todo"]

    empty = CliRunner().invoke(main, ["suite", str(spec), "--out", str(tmp_path / "never"), "--tables-only"])
    assert empty.exit_code != 0 and "Traceback" not in empty.output
    assert empty.stderr.splitlines()[-1].endswith("no trials directory: the suite has not been run here")


def test_failed_trial_is_recorded_and_the_suite_goes_on(tmp_path):
    root = random_dataset(tmp_path / "plain", n_users=50, n_items=30)  # no features: VBPR cannot run
    spec = write_suite(tmp_path / "s.yaml", root, models=["vbpr", "mf"], seeds=[1], budget={"epochs": 1})
    result = CliRunner().invoke(
        main, ["suite", str(spec), "--out", str(tmp_path / "out"), "--executor", "serial"]
    )
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "1 of 2 trials failed" in result.stderr
    rows = {r["model"]: r for r in csv.DictReader((tmp_path / "out" / "trials.csv").open())}
    assert rows["vbpr"]["status"] == "failed" and rows["mf"]["status"] == "done"
    info = json.loads((tmp_path / "out" / "trials" / rows["vbpr"]["trial_id"] / "trial.json").read_text())
    assert info["status"] == "failed" and "feature" in info["error"] and "\n" not in info["error"]
    selection = json.loads((tmp_path / "out" / "selection.json").read_text())
    assert list(selection["models"]) == ["mf"]
    # --no-resume retrains the finished trial too; the failed one is retried (and fails again)
    mf_final = tmp_path / "out" / "trials" / rows["mf"]["trial_id"] / "final.json"
    before = mf_final.stat().st_mtime_ns
    again = CliRunner().invoke(
        main, ["suite", str(spec), "--out", str(tmp_path / "out"), "--executor", "serial", "--no-resume"]
    )
    assert again.exit_code == 2 and mf_final.stat().st_mtime_ns != before
    # nothing finishes: the tables are written, no report, and the failure is the one line
    alone = write_suite(tmp_path / "v.yaml", root, models=["vbpr"], seeds=[1], budget={"epochs": 1})
    result = CliRunner().invoke(
        main, ["suite", str(alone), "--out", str(tmp_path / "v"), "--executor", "serial"]
    )
    assert result.exit_code == 2 and "1 of 1 trials failed" in result.stderr
    assert json.loads((tmp_path / "v" / "selection.json").read_text())["models"] == {}
    assert not (tmp_path / "v" / "leaderboard.json").exists()


def test_second_driver_on_the_same_suite_is_refused(tmp_path):
    root = random_dataset(tmp_path / "d", n_users=20, n_items=15)
    spec = write_suite(tmp_path / "s.yaml", root)
    (tmp_path / "out").mkdir()
    with (
        suite_lock(tmp_path / "out"),
        pytest.raises(
            TrainError, match=f"another `mmtrain suite` is running on this directory \\(pid {os.getpid()}\\)"
        ),
    ):
        run_suite(spec, tmp_path / "out", executor="serial")
    assert not (tmp_path / "out" / "trials.csv").exists()


def test_selection_uses_validation_only_and_keeps_grid_order_on_ties(tmp_path):
    spec = SuiteSpec(path=tmp_path / "s.yaml", name="s", datasets=[tmp_path / "d"], models=[], seeds=[1, 2])
    points = [{"lr": 0.1}, {"lr": 0.2}, {"lr": 0.3}]
    trials = [Trial(f"t{i}{s}", "mf", tmp_path / "d", p, s, {}) for i, p in enumerate(points) for s in (1, 2)]
    # point 0.2 and 0.3 tie on mean val (.5); 0.3 has by far the best test, which must not matter
    val = {"t0": (0.1, 0.2), "t1": (0.4, 0.6), "t2": (0.5, 0.5)}
    test = {"t0": 0.0, "t1": 0.0, "t2": 0.9}
    rows = [
        {
            "trial_id": t.trial_id,
            "status": "done",
            "val_recall@20": val[t.trial_id[:2]][t.seed - 1],
            "test_recall@20": test[t.trial_id[:2]],
        }
        for t in trials
    ]
    chosen = select(spec, trials, rows)["models"]["mf"]
    assert chosen["point"] == {"lr": 0.2} and chosen["trial_ids"] == ["t11", "t12"]
    assert chosen["val_mean"] == pytest.approx(0.5) and chosen["val_std"] == pytest.approx(
        np.std([0.4, 0.6], ddof=1)
    )
    rows[2]["status"] = rows[3]["status"] = "failed"  # a point with no finished seed is not a candidate
    chosen = select(spec, trials, rows)["models"]["mf"]
    assert chosen["point"] == {"lr": 0.3}
    # with two datasets a model is selected per dataset
    spec.datasets = [tmp_path / "d", tmp_path / "e"]
    other = Trial("e1", "mf", tmp_path / "e", {"lr": 0.1}, 1, {})
    selection = select(
        spec, [*trials, other], [*rows, {"trial_id": "e1", "status": "done", "val_recall@20": 0.05}]
    )
    assert set(selection["models"]) == {"mf/d", "mf/e"}
    assert selection["models"]["mf/e"] == {
        "model": "mf", "dataset": "e", "point": {"lr": 0.1}, "trial_ids": ["e1"], "seeds": [1],
        "val_mean": 0.05, "val_std": 0.0, "complete": True,
    }  # fmt: skip


@pytest.fixture
def shipped_datasets(tmp_path, monkeypatch):
    """The shipped suites' dataset paths (relative to the current directory) on a small dataset: expanding
    reads only each dataset's manifest."""
    root = random_dataset(tmp_path / "data" / "d", features=True)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    for name in ("tiktok", "tiktok-cold", "baby"):
        (tmp_path / "out" / name).symlink_to(root)
    return root


@pytest.mark.parametrize(
    ("name", "n_trials", "split"),
    [("tiktok", 63, "warm"), ("tiktok-cold", 21, "cold"), ("baby-id", 75, "warm")],
)
def test_shipped_suites_load_and_expand(shipped_datasets, name, n_trials, split):
    spec = load_suite(SUITES / f"{name}.yaml")
    trials = expand_trials(spec)
    assert len(trials) == n_trials and len({t.trial_id for t in trials}) == n_trials
    assert len(spec.seeds) >= 3 and {t.seed for t in trials} == set(spec.seeds)
    assert {t.dataset for t in trials} == {Path.cwd() / spec.datasets[0]}  # relative to the current directory
    assert all(t.config["split"] == split and t.config["valid_metric"] == spec.metric for t in trials)
    assert all(t.config["max_minutes"] == spec.budget["max_minutes"] > 0 for t in trials)
    assert all(trial_status(Path("suites") / name, t) == "todo" for t in trials)
    if name == "tiktok":  # cheapest first: the trials run in this order
        assert [m.name for m in spec.models] == [
            "mf", "lightgcn", "vbpr", "mmgcn", "lattice", "freedom", "bm3", "mgcn", "soil", "slmrec", "mmssl",
            "micro", "mdmns",
        ]  # fmt: skip
        published = {m.name: m.published for m in spec.models if m.published}
        assert published["lightgcn"]["recall@20"] == 0.0653 and published["mdmns"]["ndcg@20"] == 0.0525
        assert set(published) == {
            "mf",
            "lightgcn",
            "vbpr",
            "mmgcn",
            "lattice",
            "slmrec",
            "bm3",
            "mmssl",
            "mdmns",
        }
        assert all(t.config["cl_anchors"] == 1024 for t in trials if t.model == "micro")
    if name == "tiktok-cold":
        assert spec.baseline == "vbpr"
        assert [m.name for m in spec.models] == ["vbpr", "lightgcn_feat", "lightgcn", "micro"]
        assert sorted({t.config["lr"] for t in trials if t.model == "micro"}) == [1e-5, 5e-4]


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (
            {"models": {"lightgcn": {"grdi": "none"}}},
            "models.lightgcn.grdi: unknown key 'grdi' (did you mean 'grid'?)",
        ),
        ({"set": {"epoch": 3}}, ("set: unknown", "'epoch'", "did you mean 'epochs'?")),
        ({"grid": "all"}, "grid: 'all': expected 'recipe', 'none' or a mapping"),
        ({"seeds": [1, 1]}, "seeds: [1, 1]: seeds must be distinct"),
        ({"baseline": "bm3"}, "baseline: 'bm3' is not one of the suite's models (mf, lightgcn)"),
        ({"dataset": "nowhere/d"}, "dataset nowhere/d: not a dataset directory (no manifest.json)"),
    ],
)
def test_bad_suite_is_one_line_naming_file_and_key(tmp_path, patch, expected):
    root = random_dataset(tmp_path / "d", n_users=20, n_items=15)
    spec = write_suite(tmp_path / "bad.yaml", root, **patch)
    result = CliRunner().invoke(main, ["suite", str(spec), "--dry-run"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith(f"mmtrain: error: {spec}")
    assert all(part in result.stderr for part in ([expected] if isinstance(expected, str) else expected))


@pytest.mark.slow
def test_ray_refuses_a_trial_larger_than_the_machine(serial, tmp_path):
    pytest.importorskip("ray")
    spec, _ = serial
    result = CliRunner().invoke(
        main, ["suite", str(spec), "--out", str(tmp_path), "--executor", "ray", "--gpus-per-trial", "0.5"]
    )
    assert result.exit_code == 2 and "Traceback" not in result.stderr  # Ray itself may print a notice first
    last = result.stderr.splitlines()[-1]
    assert last.startswith("mmtrain: error: a trial asks for 1 CPU / 0.5 GPU but the Ray cluster has")
    assert not list(tmp_path.glob("trials/*"))


@pytest.mark.parametrize("cpus, threads", [(1, 1), (2, 2), (0.5, 1)])
def test_ray_trial_runs_torch_on_its_share_of_the_cpus(monkeypatch, cpus, threads):
    torch = pytest.importorskip("torch")
    from mmtrain import suite_exec

    seen = []
    monkeypatch.setattr(
        suite_exec, "run_trial", lambda trial, suite_dir, progress: seen.append(torch.get_num_threads())
    )
    kept = []  # the worker process keeps the memory it frees (not applied for real in this test process)
    monkeypatch.setattr("mmformat.allocator.keep_freed_memory", lambda: kept.append(True) or True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # torch's default on a 3-core node: the task must not keep it
    try:
        suite_exec._remote_trial(None, "unused", gpus=0, cpus=cpus)
    finally:
        torch.set_num_threads(before)
    assert seen == [threads] and kept == [True]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_executor_without_ray(tmp_path, monkeypatch, caplog):
    import mmtrain.suite_exec as suite_exec

    monkeypatch.setattr(suite_exec, "ray_available", lambda: False)
    with pytest.raises(
        TrainError, match=r"^--executor ray: Ray is not installed \(pip install modalrec\[ray\]\)$"
    ):
        suite_exec.choose_executor("ray")
    with pytest.raises(TrainError, match=r"^--address auto: Ray is not installed"):
        suite_exec.choose_executor("auto", "auto")
    with pytest.raises(TrainError, match="a cluster needs --executor ray"):
        suite_exec.choose_executor("serial", "10.0.0.1:6379")
    with caplog.at_level("INFO"):
        assert suite_exec.choose_executor("auto") is suite_exec.run_serial
    assert "Ray is not installed" in caplog.text
