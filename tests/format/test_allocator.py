"""A long job's process keeps the memory it frees (glibc): what it does, when it steps aside, and which
commands of mmprep and mmtrain apply it."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from mmprep import cli
from mmtrain import cli as train_cli

_FAULTS = """
import resource, sys, threading
import numpy as np
from mmformat.allocator import keep_freed_memory
from mmformat.allocator import keeps_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory() and keeps_freed_memory()
else:
    assert not keeps_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def again(out):
    for _ in range(3):
        before = faults()
        a = np.ones(64 << 20, dtype=np.uint8)
        del a
        out.append(faults() - before)
main, worker = [], []
again(main)
t = threading.Thread(target=again, args=(worker,))
t.start(); t.join()
print(main, worker)
"""


def _faults(mode: str, **env) -> tuple[list[int], list[int]]:
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True, env=env or None
    ).stdout
    main, worker = out.strip().split("] [")
    return [int(x) for x in main.strip("[]").split(",")], [int(x) for x in worker.strip("[]").split(",")]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc settings")
def test_freed_arrays_are_reused_without_page_faults_only_when_memory_is_kept():
    main, worker = _faults("keep")
    assert main[0] >= 32  # 64 MiB are at least 32 faults (2 MiB pages) on first touch
    assert max(main[1:] + worker) <= 4  # then the freed memory is touched again without faulting
    main, worker = _faults("plain")  # the default: a 64 MiB array is mapped and unmapped every time
    assert min(main + worker) >= 32


def test_keep_freed_memory_steps_aside_for_the_users_own_malloc_settings(monkeypatch):
    from mmformat.allocator import keep_freed_memory

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_max=0")
    assert keep_freed_memory() is False
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setenv("MODALREC_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False


@pytest.mark.parametrize(
    ("entry", "argv", "applied"),
    [
        (cli.run, ["build", "--help"], True),  # mmprep: the build only
        (cli.run, ["-v", "build", "--help"], True),
        (cli.run, ["info", "--help"], False),
        (cli.run, ["--version"], False),
        (train_cli.console, ["run", "--help"], True),  # mmtrain: the commands that train or rank
        (train_cli.console, ["-q", "suite", "--help"], True),
        (train_cli.console, ["grid", "--help"], True),
        (train_cli.console, ["eval", "--help"], True),
        (train_cli.console, ["models"], False),
        (train_cli.console, ["compare", "--help"], False),
        (train_cli.console, ["--version"], False),
    ],
)
def test_only_the_long_jobs_commands_tune_the_allocator(monkeypatch, entry, argv, applied):
    calls = []
    monkeypatch.setattr("mmformat.allocator.keep_freed_memory", lambda: calls.append(True) or True)
    with pytest.raises(SystemExit) as stop:
        entry(argv)
    assert stop.value.code == 0
    assert calls == ([True] if applied else [])
