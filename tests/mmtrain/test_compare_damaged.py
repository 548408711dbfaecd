"""`mmtrain compare` over run directories with a truncated or invalid final.json: the run is skipped with one
warning, or one error line when nothing readable remains; never a traceback (issue 13)."""

from __future__ import annotations

import json
import logging

from click.testing import CliRunner

from mmtrain.cli import main


def _run_dir(root, name, final_text):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("model: lightgcn\nseed: 1\nvalid_metric: recall@20\n")
    (run / "final.json").write_text(final_text)
    return run


def test_compare_skips_a_truncated_final_json(tmp_path, caplog):
    good = {"best_epoch": 3, "val": {"recall@20": 0.1}, "test": {"recall@20": 0.09}}
    _run_dir(tmp_path, "a", json.dumps(good))
    bad = _run_dir(tmp_path, "b", json.dumps(good)[:25])
    with caplog.at_level(logging.WARNING, logger="mmtrain.runs"):
        result = CliRunner().invoke(main, ["compare", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    warnings = [r.getMessage() for r in caplog.records if "skipped run" in r.getMessage()]
    assert len(warnings) == 1 and str(bad / "final.json") in warnings[0]
    assert "| a " in result.stdout and "| b " not in result.stdout


def test_compare_with_no_readable_run_is_one_error_line(tmp_path):
    _run_dir(tmp_path, "b", "[1, 2")
    _run_dir(tmp_path, "c", '"just a string"')
    result = CliRunner().invoke(main, ["compare", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "no readable finished runs" in errors[0]
