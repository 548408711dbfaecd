"""benchmarks/prep_scaling.py: the ratios are the ones the target names (checked on hand-computed runs), and a
real two-size run on small dumps alternates its builds and agrees on its counts."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tests.paths import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
_spec = importlib.util.spec_from_file_location("prep_scaling", REPO / "benchmarks" / "prep_scaling.py")
prep_scaling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prep_scaling)


def _run(wall: float, cpu: float, reading: float, writing: float) -> dict:
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mib": 100.0,
        "stages_s": {"reading": reading, "writing": writing},
    }


def test_round_ratios_are_rows_per_second_and_cpu_per_row():
    # small: 10 rows in 2 s = 5 rows/s, 0.4 CPU s a row; large: 100 rows in 25 s = 4 rows/s, 0.3 CPU s a row
    ratios = prep_scaling.round_ratios(_run(2.0, 4.0, 1, 1), _run(25.0, 30.0, 1, 1), 10, 100)
    assert ratios == {"throughput": 0.8, "cpu_per_row": 0.75}


def test_analyse_reports_each_round_their_spread_and_the_stage_ratios():
    runs = {
        "small": [_run(2.0, 4.0, 1.0, 0.5), _run(2.5, 4.0, 1.5, 0.5)],
        "large": [_run(20.0, 40.0, 10.0, 6.0), _run(20.0, 44.0, 12.0, 6.0)],
    }
    doc = prep_scaling.analyse(runs, 10, 100)
    # round 1: 5 vs 5 rows/s; round 2: 4 vs 5 rows/s
    assert [r["throughput"] for r in doc["rounds"]] == [1.0, 1.25]
    assert [r["cpu_per_row"] for r in doc["rounds"]] == [1.0, 1.1]
    assert doc["throughput"] == {"median": 1.125, "min": 1.0, "max": 1.25}
    # medians: small wall 2.25, large 20 -> (20 / 100) / (2.25 / 10) = 0.888...
    assert doc["ratio_of_medians"]["throughput"] == pytest.approx(2.25 / 10 / 0.2, abs=1e-4)
    # reading medians 1.25 and 11 s: (11 / 100) / (1.25 / 10) = 0.88; writing 0.5 and 6 s: 1.2
    assert doc["stage_ratios"] == {"reading": 0.88, "writing": 1.2}


def test_sizes_must_grow(capsys):
    with pytest.raises(SystemExit) as e:
        prep_scaling.main(["--sizes", "5000", "2000"])
    assert e.value.code == 2
    assert "SMALL must be positive and below LARGE" in capsys.readouterr().err


@pytest.mark.slow
def test_a_real_two_size_run_alternates_and_agrees_on_counts(tmp_path):
    out = tmp_path / "scaling.json"
    args = ["--sizes", "2000", "6000", "--repeat", "2", "--work-dir", str(tmp_path), "--json", str(out)]
    assert prep_scaling.main([*args, "--memory-limit", "1GB"]) == 0
    doc = json.loads(out.read_text())
    assert not doc["errors"] and doc["rows"] == {"small": 2000, "large": 6000}
    assert len(doc["runs"]["small"]) == len(doc["runs"]["large"]) == len(doc["rounds"]) == 2
    small, large = doc["runs"]["small"][0]["counts"], doc["runs"]["large"][0]["counts"]
    assert 0 < small["interactions"] < large["interactions"]
    stages = set(doc["runs"]["large"][0]["stages_s"])
    assert {"reading amazon2014 interactions", "dedupe + k-core", "writing"} <= stages
    # a stage that took 0.0 s at the small size has no ratio; the others all have one
    timed = {k for k, v in doc["summary"]["small"]["stages_s"].items() if v > 0}
    assert set(doc["stage_ratios"]) == timed & stages and "reading amazon2014 interactions" in timed
    assert doc["throughput"]["min"] <= doc["throughput"]["median"] <= doc["throughput"]["max"]
    assert not list(tmp_path.glob("*/prep-scaling-*"))  # every build's output removed
