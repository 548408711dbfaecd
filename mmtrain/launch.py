"""``mmtrain run --nproc N``: start N local ranks (spawn), give them a rendezvous, report once.

Each rank gets the environment torchrun would set (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT`` on a free loopback port) and runs the job through
:func:`mmtrain.experiment.execute`. The parent waits for all of them; the first failure stops the others, and
a user error of any rank becomes one TrainError line here (docs/distributed.md, "Commands").
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import sys
import traceback
from multiprocessing.connection import Connection, wait
from typing import Any

from mmformat.errors import UserError
from mmtrain.distributed import from_env, shutdown
from mmtrain.errors import TrainError


def free_port() -> int:
    """A TCP port on the loopback interface that is free now (the rendezvous of a local launch)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(nproc: int, job: dict[str, Any], log_level: int = logging.INFO) -> Any:
    """Run ``job`` (see :func:`mmtrain.experiment.execute`) on ``nproc`` local processes and return rank 0's
    result. The first process that fails stops the others; a user error of any rank is raised here as one
    TrainError line (the ranks that then lost their peers are not reported), a crash prints its traceback."""
    context = multiprocessing.get_context("spawn")
    port = free_port()
    processes, pipes = [], []
    for rank in range(nproc):
        reader, writer = context.Pipe(duplex=False)
        process = context.Process(
            target=_child, args=(rank, nproc, port, job, writer, log_level), name=f"mmtrain-rank{rank}"
        )
        process.start()
        writer.close()
        processes.append(process)
        pipes.append(reader)
    messages: list[tuple[str, Any]] = []
    try:
        running = {p.sentinel: rank for rank, p in enumerate(processes)}
        failed = False
        while running and not failed:
            for ready in wait([*running, *pipes]):
                if isinstance(ready, Connection):
                    _receive(ready, pipes, messages)
                    continue
                rank = running.pop(ready)
                processes[rank].join()
                failed = failed or processes[rank].exitcode != 0
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join()
    for reader in list(pipes):  # what a process sent just before it exited
        while reader in pipes and reader.poll():
            _receive(reader, pipes, messages)
    errors = [payload for kind, payload in messages if kind == "error"]
    if errors:
        raise TrainError(errors[0])
    codes = [(rank, p.exitcode) for rank, p in enumerate(processes) if p.exitcode != 0]
    if codes:
        crashes = [payload for kind, payload in messages if kind == "crash"]
        if crashes:
            sys.stderr.write(crashes[0])
        rank, code = codes[0]
        raise TrainError(f"rank {rank} of {nproc} failed (exit code {code})")
    results = [payload for kind, payload in messages if kind == "result"]
    if not results:
        raise TrainError("rank 0 ended without a result")
    return results[0]


def _receive(reader: Connection, pipes: list[Connection], messages: list[tuple[str, Any]]) -> None:
    """Append the next message of ``reader`` to ``messages``; drop the pipe once its writer is gone."""
    try:
        messages.append(reader.recv())
    except (EOFError, OSError):
        pipes.remove(reader)


def _child(rank: int, world: int, port: int, job: dict[str, Any], conn: Connection, log_level: int) -> None:
    """One rank of a :func:`launch`: set the torchrun environment, run the job, report to the parent."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    from mmformat.allocator import keep_freed_memory
    from mmformat.progress import setup_logging

    keep_freed_memory()  # a spawned rank is one training job (mmtrain.cli.console)
    setup_logging(
        log_level if rank == 0 else max(log_level, logging.WARNING), "%(asctime)s %(name)s: %(message)s"
    )
    code = 0
    try:
        from mmtrain.experiment import execute

        result = execute(job, from_env(job.get("backend", "auto")))
        if rank == 0:
            conn.send(("result", result))
    except UserError as e:
        conn.send(("error", str(e)))
        code = 2
    except OSError as e:
        if e.filename is not None:  # the environment (a read-only or full disk), as the CLI reports it
            conn.send(("error", f"{e.filename}: {e.strerror or e}"))
            code = 2
        else:
            conn.send(("crash", traceback.format_exc()))
            code = 1
    except Exception:  # a bug, or this rank lost a peer that failed: the parent decides what to show
        conn.send(("crash", traceback.format_exc()))
        code = 1
    except KeyboardInterrupt:  # Ctrl-C reaches every rank; the parent reports it once
        code = 130
    finally:
        shutdown()
        conn.close()
    sys.exit(code)
