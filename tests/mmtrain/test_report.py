"""Per-user metric files of real runs, the suite leaderboard (JSON, Markdown, HTML), `mmtrain report`, and
`mmtrain compare` grouping by (model, grid point).

The suite directory is built by hand as `mmtrain suite` lays it out (trials/<id>/ run directories with
trial.json, selection.json, suite.yaml), from 3-epoch runs on the real TikTok subset.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from scipy.stats import wilcoxon

from mmtrain.cli import main
from mmtrain.experiment import make_config, run_experiment
from mmtrain.per_user import read_per_user
from mmtrain.report import write_report
from mmtrain.runs import compare_rows
from mmtrain.stats import holm
from tests.mmtrain.helpers import tiktok_subset

SEEDS = (1, 2, 3)
# (model, grid point, seeds); mf's reg_weight=0.1 point is not the selected one and must not be reported
TRIALS = [
    ("lightgcn", {}, SEEDS),
    ("mf", {"reg_weight": 0.0}, SEEDS),
    ("mf", {"reg_weight": 0.1}, (1,)),
    ("vbpr", {}, SEEDS),
]
PUBLISHED_LIGHTGCN = 0.2


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    dataset = tiktok_subset(root / "tiktok")
    suite_dir = root / "s"
    trial_ids: dict[tuple[str, str], list[str]] = {}
    for model, point, seeds in TRIALS:
        for seed in seeds:
            sets = [("device", "cpu"), ("threads", 1), ("epochs", 3), ("tensorboard", False), ("seed", seed)]
            config = make_config(model, sets=[*sets, *point.items()])
            trial_id = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
            run = run_experiment(dataset, config, out=suite_dir / "trials", name=trial_id, progress=False)
            info = {"trial_id": trial_id, "model": model, "dataset": "tiktok", "point": point, "seed": seed}
            (run.path / "trial.json").write_text(json.dumps({**info, "status": "done"}))
            trial_ids.setdefault((model, json.dumps(point)), []).append(trial_id)
    selection = {
        "metric": "recall@20",
        "models": {
            m: {"point": p, "trial_ids": trial_ids[(m, json.dumps(p))], "val_mean": 0.0, "val_std": 0.0}
            for m, p, seeds in TRIALS
            if len(seeds) == len(SEEDS)
        },
    }
    (suite_dir / "selection.json").write_text(json.dumps(selection))
    spec = {
        "name": "tiktok-test",
        "dataset": str(dataset),
        "models": ["lightgcn", "mf", "vbpr"],
        "seeds": list(SEEDS),
        "baseline": "lightgcn",
        "published": {"lightgcn": {"recall@20": PUBLISHED_LIGHTGCN, "source": "a paper, Table 3"}},
    }
    (suite_dir / "suite.yaml").write_text(yaml.safe_dump(spec))
    return suite_dir


def finals_of(suite_dir, trial_ids):
    return [json.loads((suite_dir / "trials" / t / "final.json").read_text()) for t in trial_ids]


def seed_mean_per_user(suite_dir, trial_ids, metric):
    tables = [read_per_user(suite_dir / "trials" / t, "test") for t in trial_ids]
    assert all(np.array_equal(tables[0][0], users) for users, _ in tables)
    return tables[0][0], np.mean([values[metric] for _, values in tables], axis=0)


def test_every_run_writes_per_user_metrics_whose_means_are_final_json(suite):
    runs = sorted((suite / "trials").iterdir())
    assert len(runs) == 10
    for run in runs:
        final = json.loads((run / "final.json").read_text())
        for split in ("val", "test"):
            table = pq.read_table(run / f"{split}_per_user.parquet")
            metrics = [m for m in final[split] if m != "n_users"]
            assert table.column_names[0] == "user_idx" and sorted(table.column_names[1:]) == sorted(metrics)
            users = table.column("user_idx").to_numpy()
            assert len(users) == final[split]["n_users"] and np.all(np.diff(users) > 0)
            for m in metrics:
                assert table.column(m).to_numpy().mean() == pytest.approx(final[split][m], abs=1e-12), (
                    run,
                    m,
                )


def test_leaderboard_values_significance_and_holm(suite):
    board = write_report(suite)
    selection = json.loads((suite / "selection.json").read_text())["models"]
    assert json.loads((suite / "leaderboard.json").read_text()) == json.loads(json.dumps(board))
    entries = {e["model"]: e for e in board["models"]}
    assert set(entries) == {"lightgcn", "mf", "vbpr"} and board["baseline"] == "lightgcn"
    means = [e["test"]["recall@20"]["mean"] for e in board["models"]]
    assert means == sorted(means, reverse=True)
    mf = entries["mf"]
    assert mf["point"] == {"reg_weight": 0.0} and mf["trial_ids"] == selection["mf"]["trial_ids"]
    assert mf["seeds"] == [1, 2, 3] and mf["n_seeds"] == 3
    for entry in entries.values():
        finals = finals_of(suite, entry["trial_ids"])
        for split in ("val", "test"):
            for metric in ("recall@20", "ndcg@10", "map@50"):
                values = [f[split][metric] for f in finals]
                assert entry[split][metric]["mean"] == pytest.approx(np.mean(values), abs=1e-12)
                assert entry[split][metric]["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
        assert entry["seconds_per_epoch"]["mean"] == pytest.approx(
            np.mean([f["seconds_per_epoch"] for f in finals])
        )
        assert entry["epochs_to_best"]["mean"] == pytest.approx(np.mean([f["best_epoch"] for f in finals]))
        rss = [f["peak_memory_mib"]["rss"] for f in finals]
        assert entry["peak_memory_mib"]["rss"]["mean"] == pytest.approx(np.mean(rss))
        assert entry["peak_memory_mib"]["gpu"] == {"mean": None, "std": None}
    # the paired test: per-user recall@20 averaged over seeds, scipy's Wilcoxon, Holm over mf and vbpr
    users, base = seed_mean_per_user(suite, entries["lightgcn"]["trial_ids"], "recall@20")
    raw = []
    for model in ("mf", "vbpr"):
        u, values = seed_mean_per_user(suite, entries[model]["trial_ids"], "recall@20")
        assert np.array_equal(u, users)
        sig = entries[model]["significance"]
        expected = wilcoxon(values, base).pvalue if np.any(values != base) else 1.0
        assert sig["p"] == pytest.approx(expected, rel=1e-12)
        assert sig["n_users"] == len(users) and sig["baseline"] == "lightgcn"
        raw.append(sig["p"])
    for model, p in zip(("mf", "vbpr"), holm(raw), strict=True):
        sig = entries[model]["significance"]
        assert sig["p_holm"] == pytest.approx(p) and sig["n_tests"] == 2
        assert sig["marker"] == ("**" if p < 0.01 else "*" if p < 0.05 else "")
    assert entries["mf"]["significance"]["p_holm"] < 0.01  # 3-epoch MF is far below LightGCN on TikTok
    assert entries["lightgcn"]["significance"] is None
    pub = entries["lightgcn"]["published"]
    ours = entries["lightgcn"]["test"]["recall@20"]["mean"]
    assert pub["source"] == "a paper, Table 3"
    assert pub["metrics"]["recall@20"]["relative_diff"] == pytest.approx((ours - 0.2) / 0.2)
    assert entries["mf"]["published"] is None


def test_markdown_and_html_report(suite):
    board = write_report(suite)
    md = (suite / "leaderboard.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| mf |")]
    mf = next(e for e in board["models"] if e["model"] == "mf")
    t = mf["test"]["recall@20"]
    assert f"{t['mean']:.4f} ± {t['std']:.4f} {mf['significance']['marker']}".strip() in rows[0]
    assert "| reg_weight=0.0 | 3 |" in rows[0]
    assert "| lightgcn (baseline) |" in md and "a paper, Table 3" in md
    assert md.count("| vbpr |") == 4  # headline, cost, all test metrics, all val metrics
    page = (suite / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 2
    # works offline: nothing fetched from anywhere
    for external in ("<script", "<link", "src=", "href=", "url(", "@import"):
        assert external not in page
    # one bar per model, one validation curve per selected run (3 models x 3 seeds), 3 points each
    assert len(re.findall(r"<rect [^>]*><title>", page)) == 3
    curves = re.findall(r'<polyline points="([^"]+)"', page)
    assert len(curves) == 9 and all(len(c.split()) == 3 for c in curves)
    assert "peak RSS MiB" in page and "s/epoch" in page and "reg_weight=0.0" in page


def test_unfinished_trials_and_runs_without_per_user_files(suite, tmp_path, caplog):
    copy = tmp_path / "s"
    shutil.copytree(suite, copy)
    selection = json.loads((copy / "selection.json").read_text())["models"]
    (copy / "trials" / selection["mf"]["trial_ids"][0] / "final.json").unlink()  # a trial still running
    for trial_id in selection["vbpr"]["trial_ids"]:  # runs written before per-user files existed
        (copy / "trials" / trial_id / "test_per_user.parquet").unlink()
    board = write_report(copy)
    entries = {e["model"]: e for e in board["models"]}
    assert entries["mf"]["n_seeds"] == 2 and entries["mf"]["trial_ids"] == selection["mf"]["trial_ids"][1:]
    finals = finals_of(copy, selection["mf"]["trial_ids"][1:])
    assert entries["mf"]["test"]["recall@20"]["mean"] == pytest.approx(
        np.mean([f["test"]["recall@20"] for f in finals])
    )
    assert entries["vbpr"]["significance"] is None
    # one test left: Holm leaves its p as it is
    assert entries["mf"]["significance"]["n_tests"] == 1
    assert entries["mf"]["significance"]["p_holm"] == entries["mf"]["significance"]["p"]
    assert "has no final.json" in caplog.text and "per-user metrics missing" in caplog.text


def test_report_cli_without_torch_and_user_errors(suite, tmp_path):
    code = (
        "import sys; from mmtrain.cli import main; main(['-q', 'report', sys.argv[1], '--baseline', 'mf'], "
        "standalone_mode=False); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(suite)], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "False"
    assert "| mf (baseline) |" in out.stdout
    board = json.loads((suite / "leaderboard.json").read_text())
    assert board["baseline"] == "mf"
    assert {e["model"]: e["significance"] is None for e in board["models"]}["mf"]
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"mmtrain: error: {tmp_path}/selection.json: file not found"
    ]
    (tmp_path / "selection.json").write_text('{"metric": "recall@20",\n "models": [}')
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "selection.json:2: invalid JSON" in result.output
    assert "Traceback" not in result.output


def test_compare_groups_by_model_and_grid_point(suite):
    rows = compare_rows([suite / "trials"])
    key = {(r["model"], r.get("reg_weight")): r for r in rows}
    assert len(rows) == 4 and ("mf", "0.1") in key and ("mf", "0.0") in key
    mf = key[("mf", "0.0")]
    assert mf["n"] == 3 and mf["seeds"] == "1,2,3"
    finals = [json.loads((suite / "trials" / r / "final.json").read_text()) for r in mf["runs"].split(",")]
    values = [f["test"]["recall@20"] for f in finals]
    assert mf["test_recall@20"] == pytest.approx(np.mean(values))
    assert mf["test_recall@20_std"] == pytest.approx(np.std(values, ddof=1))
    assert key[("mf", "0.1")]["n"] == 1 and key[("mf", "0.1")]["test_recall@20_std"] is None
    result = CliRunner().invoke(main, ["-q", "compare", str(suite / "trials")])
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0]
    assert header.startswith("| model | dataset | split | reg_weight |") and "| seeds | n |" in header
    line = next(x for x in result.output.splitlines() if x.startswith("| mf |") and "| 0.0 |" in x)
    assert f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}" in line
    per_run = compare_rows([suite / "trials"], per_run=True)
    assert len(per_run) == 10 and list(per_run[0])[:5] == ["run", "model", "dataset", "split", "reg_weight"]
