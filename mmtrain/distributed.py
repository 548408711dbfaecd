"""Data-parallel training across processes: the rank context, its collectives, and the ``--nproc`` launcher.

A run on N processes (``mmtrain run --nproc N``, or ``torchrun --nproc-per-node N -m mmtrain run``) keeps one
full copy of the model per rank. Every rank draws the same global batch from the shared, identically seeded
sampler, takes its own contiguous share of the rows, and after ``backward`` the gradients are summed across
ranks, each weighted by its share of the batch (:meth:`DistContext.reduce_gradients`), so the step equals the
single-process step on the whole batch for every loss that is a mean over the batch's rows plus terms that
do not depend on the batch. Evaluation scores a contiguous share of the users per rank and gathers the
per-user metrics (:meth:`DistContext.gather_per_user`). Rank 0 alone writes the run directory and decides the
time budget and early stopping (:meth:`DistContext.agree`). ``mmtrain.launch`` starts the local processes of
``--nproc``. Design, limits and commands: docs/distributed.md.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from mmtrain.errors import TrainError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "gloo", "nccl")
# environment variables torchrun sets for every process; the --nproc launcher sets the same ones
ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a data-parallel run (one process: rank 0 of 1, every collective a no-op)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str = "auto"

    @property
    def enabled(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the run directory, logs and decides."""
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` rows (shares differ by at most one row; rank order = row order)."""
        return slice(n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size)

    def setup(self, device: torch.device) -> torch.device:
        """Join the process group (once) and return this rank's device: ``cuda:LOCAL_RANK`` on CUDA."""
        if not self.enabled:
            return device
        backend = check_backend(self.backend, device.type)
        if device.type == "cuda":
            if device.index is not None:
                raise TrainError(
                    f"--device {device} names one GPU; with {self.world_size} processes give --device cuda "
                    "(rank r uses cuda:LOCAL_RANK)"
                )
            count = torch.cuda.device_count()
            if self.local_rank >= count:
                raise TrainError(
                    f"{self.local_world_size} processes on this node but {count} CUDA devices; "
                    f"start at most {count} per node"
                )
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
            if missing:
                raise TrainError(f"distributed run without {' and '.join(missing)} (start it with torchrun)")
            dist.init_process_group(backend, rank=self.rank, world_size=self.world_size)
            log.debug("rank %d of %d joined the %s process group", self.rank, self.world_size, backend)
        return device

    def reduce_gradients(self, params: list[nn.Parameter], weight: float, stop: bool) -> bool:
        """Replace each gradient by ``Σ_r weight_r · grad_r`` over the ranks in one all-reduce per dtype; returns
        rank 0's ``stop`` (the time-budget flag rides along). A parameter gets a gradient when any rank has one
        (zeros stand in for the others), so every rank's optimizer steps the same parameters."""
        if not self.enabled:
            return stop
        groups: dict[torch.dtype, list[nn.Parameter]] = {}
        for p in params:
            if p.grad is not None and p.grad.is_sparse:
                raise TrainError("sparse gradients are not supported in a distributed run")
            groups.setdefault(p.dtype, []).append(p)
        first = True
        for members in groups.values():
            parts = [
                p.grad.reshape(-1) * weight if p.grad is not None else p.new_zeros(p.numel()) for p in members
            ]
            flags = [float(p.grad is not None) for p in members]
            if first:  # rank 0's stop flag in the first group (other ranks add 0)
                flags.append(float(stop and self.is_main))
            buffer = torch.cat(
                [*parts, torch.tensor(flags, dtype=members[0].dtype, device=members[0].device)]
            )
            dist.all_reduce(buffer)
            offset = 0
            for p, flag in zip(members, buffer[-len(flags) :].tolist(), strict=False):
                chunk = buffer[offset : offset + p.numel()].view_as(p)
                offset += p.numel()
                if flag > 0:
                    p.grad = chunk.clone() if p.grad is None else p.grad.copy_(chunk)
            if first:
                stop, first = bool(buffer[-1] > 0), False
        return stop

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        """Rank 0's values of ``flags`` on every rank (decisions that depend on wall time or are made once)."""
        if not self.enabled:
            return tuple(bool(f) for f in flags)
        values = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32, device=self._device())
        dist.broadcast(values, src=0)
        return tuple(bool(v) for v in values.tolist())

    def sum_tensor(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``values`` over the ranks (a copy; ``values`` itself is left as it is)."""
        if not self.enabled:
            return values
        total = values.clone()
        dist.all_reduce(total)
        return total

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled; for resume states and small results)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self._device())
        return box[0]

    def broadcast_state(self, model: nn.Module, buffers_only: bool = False) -> None:
        """Copy rank 0's parameters and persistent buffers (or the buffers only) into every rank's model."""
        if not self.enabled:
            return
        names = {name for name, _ in model.named_parameters()}
        for name, tensor in model.state_dict().items():
            if tensor.layout != torch.strided or (buffers_only and name in names):
                continue
            dist.broadcast(tensor, src=0)

    def gather_per_user(
        self, users: torch.Tensor, metrics: dict[str, torch.Tensor], device: torch.device
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Every rank's per-user rows on ``device``, concatenated in rank order (ascending users when the
        shares are contiguous)."""
        if not self.enabled:
            return users, metrics
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, (users.cpu(), {k: v.cpu() for k, v in metrics.items()}))
        all_users = torch.cat([u for u, _ in parts]).to(device)
        return all_users, {k: torch.cat([m[k] for _, m in parts]).to(device) for k in metrics}

    def _device(self) -> torch.device:
        """The device collectives run on: this rank's GPU under NCCL, else the CPU."""
        if dist.is_initialized() and dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


LOCAL = DistContext()


def check_backend(backend: str, device_type: str) -> str:
    """The process-group backend for ``device_type`` (``auto``: NCCL on CUDA, gloo on CPU); NCCL without CUDA
    is a one-line error."""
    if backend not in BACKENDS:
        raise TrainError(f"unknown backend {backend!r} (choose {', '.join(BACKENDS)})")
    if backend == "auto":
        return "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl" and (device_type != "cuda" or not torch.cuda.is_available()):
        raise TrainError(
            f"--backend nccl needs CUDA devices; this run is on {device_type} (use --backend gloo or --device cuda)"
        )
    if backend == "nccl" and not dist.is_nccl_available():
        raise TrainError("--backend nccl: this torch build has no NCCL")
    return backend


def from_env(backend: str = "auto") -> DistContext:
    """The context torchrun (or :func:`launch`) describes in ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; one
    process when ``WORLD_SIZE`` is unset."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    except ValueError:
        raise TrainError("RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise TrainError(f"RANK={rank} WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    return DistContext(rank, world, local_rank, local_world, backend)


def check_supported(config: dict[str, Any], world_size: int) -> None:
    """Refuse, in one line, the configurations a data-parallel run cannot train faithfully."""
    if world_size <= 1:
        return
    if config["batch_size"] < world_size:
        raise TrainError(
            f"batch_size {config['batch_size']} is smaller than the {world_size} processes "
            "(every rank needs rows of each batch)"
        )
    if config["model"] == "mmssl" and config.get("graph_regen") == "reference":
        raise TrainError(
            "mmssl with graph_regen=reference rebuilds its graphs from each batch's users, which differ per "
            "rank: not supported with several processes (use graph_regen=epoch or none)"
        )


def shutdown() -> None:
    """Leave the process group if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
