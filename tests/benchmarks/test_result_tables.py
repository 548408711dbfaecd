"""The parity verdict, docs/parity.md rendering and the TikTok table builder, on hand-made result files."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from tests.paths import REPO as ROOT


def _load(name: str, path: Path):
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


harness = _load("_harness", ROOT / "benchmarks" / "parity" / "_harness.py")
table = _load("parity_table", ROOT / "benchmarks" / "parity" / "table.py")
tiktok = _load("tiktok_table", ROOT / "benchmarks" / "tiktok_table.py")
mmrec = _load("parity_mmrec", ROOT / "benchmarks" / "parity" / "mmrec.py")
cripac = _load("_cripac", ROOT / "benchmarks" / "parity" / "_cripac.py")
common = _load("_common", ROOT / "benchmarks" / "_common.py")
cripac_check = _load("_cripac_check", ROOT / "benchmarks" / "parity" / "_cripac_check.py")
lattice = _load("parity_lattice", ROOT / "benchmarks" / "parity" / "lattice.py")

OURS = [[0.050, 0.070, 0.080], [0.054, 0.072, 0.082], [0.052, 0.074, 0.084]]


def test_verdict_parity_inside_the_seed_band():
    assert harness.verdict(OURS, [0.051, 0.073, 0.083])[0] == "parity"


def test_verdict_parity_within_five_percent_of_the_mean_outside_the_band():
    # epoch 3: band .080-.084, mean .082; .0852 is outside the band but 3.9% above the mean
    assert harness.verdict(OURS, [0.052, 0.072, 0.0852])[0] == "parity"


def test_verdict_differs_names_the_first_epoch_outside():
    kind, why = harness.verdict(OURS, [0.052, 0.060, 0.090])
    assert kind == "differs"
    assert why.startswith("epoch 2: theirs 0.0600, ours 0.0720")


def test_verdict_extent_counts_epochs_outside_and_our_own_seeds_failing():
    # epochs 2 (.060 vs band .070-.074) and 3 (.090 vs .080-.084, 9.8% over the mean) are outside; theirs' 4th
    # epoch has no counterpart. Leave-one-out: seeds 1 and 2 miss the others' band by > 5% at epoch 1, seed 3 passes
    extent = harness.verdict_extent(OURS, [0.052, 0.060, 0.090, 0.5])
    assert extent == " (2 of 3 epochs outside; by the same rule 2 of our 3 seeds differ from the other two)"
    assert harness.verdict_extent([[0.05, 0.07, 0.08]] * 3, [0.05, 0.09, 0.08]) == " (1 of 3 epochs outside)"


def test_verdict_skips_epochs_without_validation():
    ours = [[None, 0.07], [None, 0.072], [None, 0.074]]
    assert harness.verdict(ours, [0.0, 0.071]) == ("parity", "1 epochs inside the seed band or within 5%")
    assert harness.verdict(ours, [0.071, None])[0] == "differs"


def _result(model: str, verdict: str) -> dict:
    return {
        "model": model,
        "original": {"repo": "owner/repo", "commit": "a" * 40, "entry": "main.py"},
        "shims": [".cuda() -> CPU"],
        "protocol": {"dataset": "tiktok", "epochs": 3},
        "ours": {"seeds": [1, 2, 3], "val_recall@20": OURS, "s_per_epoch": 2.0, "command": "mmtrain run"},
        "theirs": {"val_recall@20": [0.05, 0.07, 0.081], "s_per_epoch": 4.0, "command": "python main.py"},
        "theirs_under_ours": None,
        "verdict": verdict,
        "details": "Compared three epochs.",
    }


def test_parity_table_row_and_details():
    rendered = table.render([_result("lightgcn", "parity")])
    row = next(line for line in rendered.splitlines() if line.startswith("| [lightgcn]"))
    # last-epoch mean of .080/.082/.084 = .082, sample std = .002
    assert "0.0820 ± 0.0020 (3 seeds)" in row and "| 0.0810 |" in row and "2.0 / 4.0" in row
    assert row.endswith("| parity |") and "`aaaaaaaaaa`" in row
    assert "| 3 | 0.0800 | 0.0820 | 0.0840 | 0.0810 |" in rendered
    assert "- .cuda() -> CPU" in rendered


def test_their_seed_band_against_ours():
    theirs = {
        999: harness.Curve(recall=[0.060, 0.075, 0.088], loss=[0.6, 0.5, 0.4]),
        1: harness.Curve(recall=[0.040, 0.071, 0.079], loss=[0.6, 0.5, 0.4]),
        2: harness.Curve(),  # never finished an epoch: left out
    }
    band = harness.seed_band(theirs, OURS, compared=3)
    assert band["seeds"] == [999, 1] and band["epochs"] == 3
    # epoch 1: theirs .040-.060 against ours .050-.054 overlap; epoch 2 .071-.075 vs .070-.074 overlap;
    # epoch 3 .079-.088 vs .080-.084 overlap: never disjoint
    assert band["bands_disjoint_at"] == []
    assert band["mean_val_recall@20"] == pytest.approx([0.050, 0.073, 0.0835])
    assert band["verdict_of_their_mean"] == "3 epochs inside the seed band or within 5%"
    assert band["late_mean_theirs"] == pytest.approx([0.223 / 3, 0.19 / 3])
    moved = {s: harness.Curve(recall=[v + 0.01 for v in c.recall]) for s, c in theirs.items()}
    assert harness.seed_band(moved, OURS, compared=3)["bands_disjoint_at"] == [2, 3]
    assert harness.seed_band({999: theirs[999]}, OURS, compared=3) is None  # one seed of theirs: no band


def _cripac_log(path: Path, recalls: list[float]) -> None:
    """A log in the CRIPAC originals' format: one train and one val line per epoch, numbered from 0."""
    lines = []
    for epoch, recall in enumerate(recalls):
        lines.append(f"Epoch {epoch} [5.0s]: train==[2.00000=1.99000 + 0.01000]")
        lines.append(
            f"Epoch {epoch} [5.0s + 1.0s]:  val==[2.00000=1.99000 + 0.01000 + 0.00000], "
            f"recall=[0.01000, {recall:.5f}], precision=[0.00100, 0.00100]"
        )
    path.write_text("\n".join(lines) + "\n")


def test_cripac_their_seeds_run_once_each_and_the_default_seed_is_the_compared_run(tmp_path, monkeypatch):
    codes = tmp_path / "work" / "LATTICE" / "codes"
    (codes.parent / "data" / "tiktok" / "5-core").mkdir(parents=True)
    (codes.parent / "data" / "tiktok" / "5-core" / "train.json").write_text('{"0": [1, 2], "1": [3]}')
    monkeypatch.setattr(cripac, "prepare", lambda repo, work, shims, dataset: codes)
    calls = []

    def fake_run_theirs(command, cwd, log, env=None):
        seed = int(command[command.index("--seed") + 1]) if "--seed" in command else cripac.THEIR_SEED
        calls.append(seed)
        _cripac_log(log, [0.01 * seed, 0.02 * seed])
        return 0, 1.0

    monkeypatch.setattr(harness, "run_theirs", fake_run_theirs)
    args = argparse.Namespace(
        repo=tmp_path / "LATTICE",
        work=tmp_path / "work",
        epochs=2,
        collect=False,
        only="theirs",
        their_seeds=[123, 1, 2],
        seeds=[1],
        dataset=tmp_path,
        row=None,
    )
    _cripac_log(tmp_path / "work" / "LATTICE.log", [0.03, 0.05])  # the default seed ran before: kept
    cripac.run_rows(args, {"repo": "x/LATTICE"}, [], [], 1024, [], {})
    assert calls == [1, 2]
    assert cripac.parse_log(tmp_path / "work" / "LATTICE-s2.log", 1).recall == [0.02, 0.04]
    assert cripac.parse_log(tmp_path / "work" / "LATTICE.log", 1).recall == [0.03, 0.05]
    cripac.run_rows(args, {"repo": "x/LATTICE"}, [], [], 1024, [], {})
    assert calls == [1, 2]  # every log complete: nothing runs again
    monkeypatch.setattr(sys, "argv", ["lattice.py", "--repo", "r", "--their-seeds", "1", "2"])
    with pytest.raises(SystemExit):
        cripac.arguments("doc", epochs=2, work=str(tmp_path))


def test_near_tied_rows_are_the_rows_whose_kth_and_next_cosine_are_equal():
    import torch

    # k=1 with self included: items 0 and 1 share a vector (their 1st and 2nd cosine are both 1); items 2 and 3
    # have cos .8 with each other and at most .6 with the rest (gap .2)
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    assert cripac_check.gaps(features, k=1).tolist() == pytest.approx([0.0, 0.0, 0.2, 0.2])
    assert cripac_check.tied_rows(features, k=1) == 2


def _lattice_checks() -> dict:
    step = {
        "loss_ours": 0.6866975,
        "loss_theirs": 0.6866972,
        "max_rel_grad_diff": 0.02,
        "max_abs_item_diff": 0.01,
        "max_abs_user_diff": 4e-9,
    }
    return {
        "step": {
            "batch": 1024,
            "own_graphs": {"rebuild": step, "reuse": step},
            "theirs_graphs": {"rebuild": step, "reuse": {**step, "max_rel_grad_diff": 0.0017}},
            "tied_rows": {"raw image": 109, "raw audio": 477, "projected image": 134, "projected audio": 523},
            "learned_rows": {
                "image": {"differ": 1, "differ_near_tie": 1},
                "audio": {"differ": 32, "differ_near_tie": 32},
            },
        },
        "evaluator": {
            "run": "lattice-s1",
            "epoch": 19,
            "val_recall@20_ours": 0.08653,
            "val_recall@20_their_evaluator": 0.08653,
            "val_recall@20_their_forward": 0.08653,
        },
    }


def test_lattice_checks_are_read_back_with_the_welch_test_of_the_late_means(tmp_path):
    band = {
        "late_epochs": [26, 30],
        "late_mean_ours": [0.085, 0.083, 0.087],
        "late_mean_theirs": [0.084, 0.079, 0.082],
    }
    # Welch by hand: means .085 and .081667, sample variances 4e-6 and 6.333e-6, se = sqrt((4e-6 + 6.333e-6)/3)
    t, p = harness.late_welch(band)
    assert t == pytest.approx((0.085 - 0.245 / 3) / ((4e-6 + 19e-6 / 3) / 3) ** 0.5)
    assert 0.05 < p < 0.3
    assert harness.late_welch({**band, "late_mean_theirs": [0.08]}) is None
    assert harness.late_gap(band) == pytest.approx(0.085 - 0.245 / 3)
    args = argparse.Namespace(work=tmp_path, step_check=False)
    assert lattice.checks(args, tmp_path, tmp_path, band) == ({}, "", "")  # nothing run, nothing found
    (tmp_path / "lattice-checks.json").write_text(json.dumps(_lattice_checks()))
    found, text, cause = lattice.checks(args, tmp_path, tmp_path, band)
    assert found == _lattice_checks()
    assert "audio 32 (32), image 1 (1)" in text and "0.08653 under theirs" in text
    assert cause.startswith("none found in the model, evaluator or batches")
    assert cause.endswith(
        f"epochs 26-30 the mean of our seeds is +0.0033 from theirs, which Welch's test does not separate from "
        f"seed noise (t = {t:.2f}, p = {p:.2f})"
    )
    # a step check whose losses differ supports no cause
    broken = _lattice_checks()
    broken["step"]["theirs_graphs"]["reuse"] = {**broken["step"]["theirs_graphs"]["reuse"], "loss_ours": 0.7}
    (tmp_path / "lattice-checks.json").write_text(json.dumps(broken))
    assert lattice.checks(args, tmp_path, tmp_path, band)[2] == ""


def test_loss_overlap_counts_epochs_whose_seed_bands_meet_and_welch_says_which_gaps_are_noise():
    theirs = [[1.0, 2.0, 3.0], [1.2, 2.2, 3.2], [1.0]]  # the one-epoch seed is left out
    ours = [[1.1, 2.5, 2.0], [1.3, 2.6, 2.5]]
    # epoch 1: 1.0-1.2 meets 1.1-1.3; epoch 2: 2.0-2.2 below 2.5-2.6; epoch 3: 3.0-3.2 above 2.0-2.5
    assert harness.loss_overlap(theirs, ours, 3) == 1
    assert harness.loss_overlap(theirs, [[1.1]], 3) == 0
    close = {
        "late_epochs": [16, 20],
        "late_mean_ours": [0.085, 0.083, 0.087],
        "late_mean_theirs": [0.084, 0.079, 0.082],
    }
    far = {**close, "late_mean_theirs": [0.060, 0.061, 0.062]}
    assert "+0.0033 from theirs, which Welch's test does not separate" in harness.welch_sentence(close)
    assert "+0.0240 from theirs, which Welch's test does separate" in harness.welch_sentence(far)
    assert harness.welch_sentence(None) == ""


def test_parity_table_shows_their_seed_band():
    result = _result("lightgcn", "parity")
    result["theirs_seeds"] = {"seeds": [999, 1], "val_recall@20": [[0.05, 0.07, 0.081], [0.05, 0.07, 0.079]]}
    rendered = table.render([result])
    assert "| 0.0810 (seed 999); 0.0800 ± 0.0014 (2 seeds) |" in rendered
    assert "| epoch | ours s1 | ours s2 | ours s3 | theirs | theirs s1 |" in rendered
    assert "| 3 | 0.0800 | 0.0820 | 0.0840 | 0.0810 | 0.0790 |" in rendered


def test_write_result_refuses_a_result_without_a_verdict(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "PARITY_RESULTS", tmp_path)
    bad = _result("mf", "parity")
    del bad["verdict"]
    with pytest.raises(ValueError, match="verdict"):
        harness.write_result(bad)
    path = harness.write_result(_result("mf", "parity"))
    assert json.loads(path.read_text())["machine"]["cpu_count"] >= 1


def _suite(
    tmp_path: Path,
    stops: list[str],
    schedule: dict | None = None,
    more_models: tuple = (),
    cold: bool = False,
) -> Path:
    suite = tmp_path / "suite"
    spec = {
        "name": "t",
        "seeds": [1, 2, 3],
        "protocol": {"split": "warm"},
        "budget": {"max_minutes": 30},
        "models": {
            "vbpr": {"set": {"lr": 0.001}, "published": {"recall@20": 0.038, "source": "paper"}},
            **{m: {} for m in more_models},
        },
    }
    (suite / "trials").mkdir(parents=True)
    (suite / "suite.yaml").write_text(yaml.safe_dump(spec))
    ids = []
    for seed, (recall, stop) in enumerate(zip([0.04, 0.05, 0.06], stops, strict=True), start=1):
        ids.append(f"t{seed}")
        final = {
            "seed": seed,
            "best_epoch": 10 * seed,
            "epochs_run": 10 * seed + 5,
            "stop_reason": stop,
            "seconds_per_epoch": float(seed),
            "test": {"recall@20": recall, "ndcg@20": recall / 2},
        }
        if cold:
            final["test_cold_candidates"] = {"recall@20": 10 * recall, "ndcg@20": 4 * recall}
        (suite / "trials" / f"t{seed}").mkdir()
        (suite / "trials" / f"t{seed}" / "final.json").write_text(json.dumps(final))
        if schedule is not None:
            (suite / "trials" / f"t{seed}" / "config.yaml").write_text(
                yaml.safe_dump({"model": "vbpr", **schedule})
            )
    selection = {
        "metric": "recall@20",
        "models": {"vbpr": {"point": {"reg_weight": 0.1}, "trial_ids": ids, "complete": len(ids) == 3}},
    }
    (suite / "selection.json").write_text(json.dumps(selection))
    return suite


def test_tiktok_table_entry(tmp_path, monkeypatch):
    monkeypatch.setattr(tiktok, "PARITY", tmp_path / "parity")
    entry = tiktok.build_table(_suite(tmp_path, ["patience"] * 3))["models"]["vbpr"]
    assert entry["recall@20"]["mean"] == pytest.approx(0.05) and entry["recall@20"]["std"] == pytest.approx(
        0.01
    )
    assert entry["ndcg@20"]["seeds"] == [0.02, 0.025, 0.03]
    assert entry["selected"] == {"lr": 0.001, "reg_weight": 0.1}
    assert entry["published_recall@20"] == 0.038 and entry["s_per_epoch"] == pytest.approx(2.0)
    assert entry["best_epoch"] == [10, 20, 30] and entry["converged"] is True
    assert entry["parity"] == "not run: no parity result"


def test_tiktok_table_budget_cut_seed_is_not_converged_and_parity_is_read(tmp_path, monkeypatch):
    (tmp_path / "parity").mkdir()
    (tmp_path / "parity" / "vbpr.json").write_text(json.dumps({"verdict": "differs: their lr schedule"}))
    monkeypatch.setattr(tiktok, "PARITY", tmp_path / "parity")
    entry = tiktok.build_table(_suite(tmp_path, ["patience", "time", "patience"]))["models"]["vbpr"]
    assert entry["converged"] is False and entry["stop_reason"] == ["patience", "time", "patience"]
    assert entry["parity"] == "differs: their lr schedule"


@pytest.mark.parametrize(
    "schedule, converged",
    [({"epochs": 50, "patience": 50}, True), ({"epochs": 1000, "patience": 10}, False), (None, False)],
)
def test_tiktok_table_full_fixed_schedule_counts_as_converged(tmp_path, monkeypatch, schedule, converged):
    monkeypatch.setattr(tiktok, "PARITY", tmp_path / "parity")
    table = tiktok.build_table(_suite(tmp_path, ["epochs"] * 3, schedule=schedule))
    assert table["models"]["vbpr"]["converged"] is converged
    assert table["complete"] is True and table["missing"] == []


def test_tiktok_table_of_a_running_suite_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(tiktok, "PARITY", tmp_path / "parity")
    table = tiktok.build_table(_suite(tmp_path, ["patience"] * 3, more_models=("mmssl", "mdmns")))
    assert table["complete"] is False and sorted(table["missing"]) == ["mdmns", "mmssl"]
    assert list(table["models"]) == ["vbpr"] and table["models"]["vbpr"]["complete"] is True


def test_tiktok_table_of_a_cold_suite_has_both_candidate_sets(tmp_path, monkeypatch):
    monkeypatch.setattr(tiktok, "PARITY", tmp_path / "parity")
    entry = tiktok.build_table(_suite(tmp_path, ["patience"] * 3, cold=True))["models"]["vbpr"]
    assert entry["recall@20"]["seeds"] == [0.04, 0.05, 0.06]
    cold = entry["test_cold_candidates"]
    assert cold["recall@20"]["seeds"] == pytest.approx([0.4, 0.5, 0.6]) and cold["ndcg@20"][
        "mean"
    ] == pytest.approx(0.2)
    warm = tiktok.build_table(_suite(tmp_path / "w", ["patience"] * 3))["models"]["vbpr"]
    assert "test_cold_candidates" not in warm


@pytest.mark.parametrize(
    "text, mode",
    [("always [madvise] never\n", "madvise"), ("[always] madvise never\n", "always"), ("garbled\n", None)],
)
def test_machine_info_records_the_kernels_huge_page_mode(tmp_path, text, mode):
    path = tmp_path / "enabled"
    path.write_text(text)
    assert common.transparent_hugepages(path) == mode
    assert common.transparent_hugepages(tmp_path / "missing") is None
    assert "transparent_hugepages" in common.machine_info()
