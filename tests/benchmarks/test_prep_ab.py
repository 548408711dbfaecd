"""benchmarks/prep_ab.py: the base side runs the archived code, not the checkout's; stage lines are parsed; a
real A/B of HEAD against the working tree agrees on its counts."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import pytest

from tests.paths import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
_spec = importlib.util.spec_from_file_location("prep_ab", REPO / "benchmarks" / "prep_ab.py")
prep_ab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prep_ab)

FAKE_CLI = """
import json, sys
from pathlib import Path

def run():
    out = Path(sys.argv[sys.argv.index("--out") + 1])
    out.mkdir(parents=True)
    counts = {"after_dedupe": 7, "users": 3, "items": 2, "interactions": 5}
    splits = {"warm": {"counts": {"train": 3, "val": 1, "test": 1}}}
    (out / "manifest.json").write_text(json.dumps({"counts": counts, "splits": splits}))
    print("✓ reading fake interactions (1.5s)", file=sys.stderr)
    print("✓ writing " + str(out) + " (0.2s)", file=sys.stderr)
"""


def test_a_side_runs_the_packages_on_its_path_not_the_checkouts(tmp_path):
    src = tmp_path / "src"
    (src / "mmprep").mkdir(parents=True)
    (src / "mmprep" / "__init__.py").write_text("")
    (src / "mmprep" / "cli.py").write_text(textwrap.dedent(FAKE_CLI))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    run = prep_ab.run_side("base", src, tmp_path / "dump.json.gz", scratch, "1GB")
    assert "error" not in run, run
    assert run["stages_s"] == {"reading fake interactions": 1.5, "writing": 0.2}
    assert run["counts"] == {
        "after_dedupe": 7,
        "users": 3,
        "items": 2,
        "interactions": 5,
        "split_train": 3,
        "split_val": 1,
        "split_test": 1,
    }
    assert not (scratch / "base-out").exists()  # the output is removed once counted


def test_stage_lines_are_named_without_their_run_specific_parts():
    log = "noise\n✓ dedupe + k-core (100,000 records) (2.0s)\n  ✓ random split (0.5s)\n✓ writing /tmp/x (1.25s)\n"
    assert prep_ab.stages(log) == {"dedupe + k-core": 2.0, "random split": 0.5, "writing": 1.25}


def test_unknown_base_revision_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match="--base no-such-rev"):
        prep_ab.extract_base("no-such-rev", tmp_path)


@pytest.mark.slow
def test_ab_of_head_against_the_working_tree_agrees_on_counts(tmp_path):
    out = tmp_path / "ab.json"
    code = prep_ab.main(
        ["--base", "HEAD", "--size", "3000", "--repeat", "1", "--work-dir", str(tmp_path), "--json", str(out)]
    )
    doc = json.loads(out.read_text())
    assert code == 0 and doc["counts_agree"] and not doc["errors"]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    assert doc["base"]["commit"] == head
    for side in ("base", "head"):
        (run,) = doc["runs"][side]
        assert run["counts"]["interactions"] > 0
        assert {"reading amazon2014 interactions", "dedupe + k-core", "writing"} <= set(run["stages_s"])
    assert set(doc["summary"]) == {"base", "head"} and doc["head_over_base_wall"] > 0
