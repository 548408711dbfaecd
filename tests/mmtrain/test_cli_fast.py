"""Commands that do not train start without torch: `--help`, `models`, `compare`, and every config error.

Each command runs in a fresh interpreter (the test process has torch loaded already) that reports whether
torch was imported by the time the command finished. The model specs are torch-free and agree with the
model classes and with the constants of the torch code they name.
"""

from __future__ import annotations

import csv
import io
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from mmtrain.config import find_recipe
from mmtrain.experiment import make_config, run_experiment
from mmtrain.models import available, get_model, get_spec
from mmtrain.models.registry import register
from tests.mmtrain.helpers import tiktok_subset

MARK = "torch-loaded: "
PROBE = (
    "import sys\n"
    "from mmtrain.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:], prog_name='mmtrain')\n"
    "    code = 0\n"
    "except SystemExit as e:\n"
    "    code = e.code or 0\n"
    f"print('{MARK}' + str('torch' in sys.modules), file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def mmtrain(*args: str) -> tuple[int, str, list[str], bool]:
    """Run ``mmtrain ARGS`` in a fresh interpreter: exit code, stdout, stderr lines, whether torch loaded."""
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300)
    lines = out.stderr.splitlines()
    assert lines and lines[-1].startswith(MARK), out.stderr
    return out.returncode, out.stdout, lines[:-1], lines[-1] == f"{MARK}True"


def test_help_of_every_command_without_torch():
    from mmtrain.cli import main

    for args in [(), *((name,) for name in main.commands)]:
        code, stdout, stderr, torch_loaded = mmtrain(*args, "--help")
        assert code == 0 and stderr == [], (args, stderr)
        assert "Usage: mmtrain" in stdout
        assert not torch_loaded, args


def test_models_lists_every_model_without_torch():
    code, stdout, stderr, torch_loaded = mmtrain("models")
    assert code == 0 and stderr == [] and not torch_loaded
    rows = [line.split(None, 1) for line in stdout.splitlines()]
    assert [name for name, _ in rows] == available() and len(rows) == 14
    assert all(summary == get_spec(name).summary and summary for name, summary in rows)

    code, stdout, _, torch_loaded = mmtrain("models", "--params")
    assert code == 0 and not torch_loaded
    lines = stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("lightgcn "))
    assert lines[at + 1].split() == ["embedding_size=64,", "ui_layers=2,", "reg_weight=0.0001,",
                                     "reg_style=emb,", "adj_norm=sym"]  # fmt: skip
    assert lines[at + 2].split() == ["recipe:", str(find_recipe("lightgcn"))]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "lightgcm"], "unknown model 'lightgcm' (available: bm3, freedom,"),
        (["--model", "lightgcn", "--set", "lr=nan"], "lr=nan: must be > 0"),
        (["--model", "lightgcn", "--set", "n_layers=3"], "unknown key 'n_layers' for lightgcn: renamed to"),
        (["--model", "lightgcn", "--set", "ui_layer=3"], "unknown key 'ui_layer' for lightgcn (did you mean"),
        (["--model", "lightgcn", "--set", "ui_layers"], "bad --set 'ui_layers': expected key=value"),
        (["--model", "lightgcn", "--set", "adj_norm=row"], "adj_norm='row': choose from sym, sym_self,"),
        (["--model", "mmssl", "--set", "head_num=3"], "head_num=3 must divide embedding_size=64"),
        (["--model", "mdmns", "--set", "sampling_steps=9"], "sampling_steps=9: must be between 0 and steps"),
        (["--model", "mf", "--config", "nope.yaml"], "nope.yaml: recipe not found"),
    ],
)
def test_config_errors_without_torch(tmp_path, args, message):
    for command in ("run", "grid"):
        code, stdout, stderr, torch_loaded = mmtrain(command, *args, "--dataset", str(tmp_path / "none"))
        assert code == 2 and stdout == "", (command, stdout)
        assert len(stderr) == 1 and stderr[0].startswith("mmtrain: error: ") and message in stderr[0], stderr
        assert not torch_loaded, (command, args)
    assert not (tmp_path / "runs").exists()


def test_valid_config_then_loads_torch(tmp_path):
    """The control: the same probe sees torch once a command gets past its config (here to a missing dataset)."""
    code, _, stderr, torch_loaded = mmtrain("run", "--model", "mf", "--dataset", str(tmp_path / "none"))
    assert code == 2 and "none" in stderr[-1] and torch_loaded


def test_compare_real_runs_without_torch(tmp_path):
    dataset = tiktok_subset(tmp_path / "tiktok")
    sets = [("device", "cpu"), ("threads", 1), ("epochs", 2), ("tensorboard", False)]
    finals = [
        run_experiment(
            dataset, make_config("mf", sets=[*sets, ("seed", s)]), out=tmp_path / "runs", progress=False
        )
        for s in (1, 2)
    ]
    code, stdout, stderr, torch_loaded = mmtrain("-q", "compare", str(tmp_path / "runs"), "--format", "csv")
    assert code == 0 and stderr == [] and not torch_loaded
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert len(rows) == 1, stdout  # the two seeds of one point are one row
    row = rows[0]
    recalls = [f.final["test"]["recall@20"] for f in finals]
    assert (row["model"], row["seeds"], row["n"]) == ("mf", "1,2", "2")
    assert float(row["test_recall@20"]) == pytest.approx(statistics.mean(recalls))
    assert float(row["test_recall@20_std"]) == pytest.approx(statistics.stdev(recalls))

    code, _, stderr, torch_loaded = mmtrain("compare", str(tmp_path / "missing"))
    assert code == 2 and len(stderr) == 1 and "missing" in stderr[0] and not torch_loaded


def test_specs_import_no_torch():
    code = "import sys; from mmtrain.models import available, get_spec; [get_spec(n) for n in available()]; "
    code += "print('torch' in sys.modules, len(available()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "14"]


@pytest.mark.parametrize("name", available())
def test_model_class_carries_its_spec(name):
    spec, cls = get_spec(name), get_model(name)
    assert issubclass(cls, spec) and cls.name == name
    for attr in ("defaults", "choices", "ranges", "renames", "summary"):
        assert getattr(cls, attr) is getattr(spec, attr)
    assert make_config(name)["model"] == name


def test_spec_choices_match_the_torch_code():
    from mmtrain.graph import NORMS
    from mmtrain.graph.interest import VARIANTS
    from mmtrain.models.losses import REG_STYLES

    assert get_spec("lightgcn").choices == {"reg_style": REG_STYLES, "adj_norm": NORMS}
    assert get_spec("soil").choices == {"variant": VARIANTS}
    assert (
        get_spec("mf").choices == {"reg_style": REG_STYLES}
        and get_spec("vbpr").choices["reg_style"] == REG_STYLES
    )
    # SOIL's spec extends MGCN's renames
    assert get_spec("mgcn").renames.items() <= get_spec("soil").renames.items()


def test_register_needs_the_spec():
    from mmtrain.models.base import Model

    class Stray(Model):
        name = "stray"

    with pytest.raises(ValueError, match="must subclass the registered spec of 'stray'"):
        register(Stray)

    class NotItsSpec(Model):
        name = "mf"

    with pytest.raises(ValueError, match="must subclass the registered spec of 'mf'"):
        register(NotItsSpec)


def test_summaries_match_the_models_page():
    """`mmtrain models` and the table of docs/models/README.md say the same one line per model."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "models" / "README.md").read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| `(\w+)` \| \[\w+\.md\]\(\w+\.md\) \| (.+) \|$", page, flags=re.MULTILINE))
    assert table == {name: get_spec(name).summary for name in available()}


def test_suite_dry_run_and_suite_errors_without_torch(tmp_path):
    """A suite's --dry-run resolves every trial's config (ids are config hashes) without torch; a bad suite is
    one line, also without torch."""
    data = tiktok_subset(tmp_path / "tiktok")
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\ndataset: {data}\nseeds: [1, 2]\ngrid: none\nmodels: [mf, lightgcn]\n")
    code, stdout, stderr, torch_loaded = mmtrain(
        "suite", str(suite), "--out", str(tmp_path / "out"), "--dry-run"
    )
    assert code == 0 and not torch_loaded, stderr
    assert "4 trials" in stdout + "\n".join(stderr)
    suite.write_text(f"name: s\ndataset: {data}\nseeds: [1, 2, 3]\nmodels: [mf]\nset: {{lr: .nan}}\n")
    code, _, stderr, torch_loaded = mmtrain("suite", str(suite), "--out", str(tmp_path / "out2"))
    assert code == 2 and len(stderr) == 1 and "lr" in stderr[0] and not torch_loaded, stderr
