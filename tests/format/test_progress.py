"""One progress library (tqdm, through mmformat.progress) and log lines that never land inside a bar."""

from __future__ import annotations

import ast
import logging
import re
import subprocess
import sys

import tomllib

from mmformat import progress
from tests.paths import REPO

PACKAGES = ("mmformat", "mmprep", "mmtrain", "benchmarks")


def _modules():
    for package in PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


def _imports(path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_mmformat_progress_imports_tqdm_and_nothing_imports_rich():
    tqdm_users = {p.relative_to(REPO).as_posix() for p in _modules() if "tqdm" in _imports(p)}
    rich_users = [p.relative_to(REPO).as_posix() for p in _modules() if "rich" in _imports(p)]
    assert tqdm_users == {"mmformat/progress.py"} and rich_users == []
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~\[ ]", d, maxsplit=1)[0].lower() for d in deps}
    assert "tqdm" in names and "rich" not in names


def test_every_logger_is_named_after_its_module():
    """Our loggers are ``getLogger(__name__)``; a fixed name is allowed only for another library's logger."""
    fixed = []
    for path in _modules():
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if "getLogger(" not in line or "getLogger(__name__)" in line or "getLogger()" in line:
                continue
            other = re.search(r"getLogger\(\"([\w.]+)\"\)", line)  # quieting another library's logger is fine
            if other is None or other.group(1).split(".")[0] in {"mmprep", "mmtrain", "mmformat"}:
                fixed.append(f"{path.relative_to(REPO)}:{line_no}: {line.strip()}")
    assert fixed == []


def test_mmformat_progress_does_not_import_torch():
    code = "import sys, mmformat.progress; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


def test_log_lines_are_written_between_bar_redraws_not_inside_them(capsys):
    logger = logging.getLogger("tests.progress.demo")
    handler = progress.TqdmHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with progress.bar(total=10, desc="items", mininterval=0, ascii=True, ncols=60) as bar:
            bar.update(3)
            logger.warning("halfway there")
            bar.update(7)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    text = capsys.readouterr().err
    # tqdm redraws with carriage returns; a log line must sit on a line of its own, not after a bar's text
    lines = [seg for line in text.split("\n") for seg in [line.split("\r")[-1]]]
    assert "WARNING tests.progress.demo: halfway there" in lines
    assert "items: 100%" in text and "items:  30%" in text


def test_setup_logging_keeps_an_existing_configuration(capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        root.handlers = []
        progress.setup_logging(logging.INFO, "%(name)s: %(message)s")
        logging.getLogger("tests.progress.cli").info("configured")
        assert capsys.readouterr().err == "tests.progress.cli: configured\n"
        assert [type(h) for h in root.handlers] == [progress.TqdmHandler]
        progress.setup_logging(
            logging.DEBUG, "%(message)s"
        )  # a second call (another CLI entry) changes nothing
        assert len(root.handlers) == 1 and root.level == logging.INFO
    finally:
        root.handlers, root.level = saved


def test_echo_prints_one_line_on_stderr(capsys):
    progress.echo("features/text.npy: d=384")
    assert capsys.readouterr() == ("", "features/text.npy: d=384\n")
