"""Scale-out helpers: data parallelism under torchrun, and locks for members run as separate jobs.

Under `torchrun --nproc_per_node N -m leaveout train ...` every process trains the same member on
its shard of each global batch (DistributedDataParallel: gloo on CPU, nccl on CUDA); only rank 0
writes files. Several `--member i` jobs may share one run directory: they serialise the creation
of the shared files with a lock and otherwise write only into their own member folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from .errors import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes (torchrun's environment)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> World:
        return cls(
            int(os.environ.get("RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)),
        )


ALONE = World()  # a single process


def start(world: World, device: torch.device) -> torch.device:
    """Join the process group (when torchrun started several processes); returns this rank's device."""
    if world.size == 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def sum_across(values: torch.Tensor, world: World) -> torch.Tensor:
    """The element-wise sum of `values` over every process (a copy; unchanged when alone)."""
    if world.size == 1:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values


def shard(global_part: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's contiguous slice of a global batch's rows."""
    if world.size == 1:
        return global_part
    return torch.tensor_split(global_part, world.size)[world.rank]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if missing), released on exit or process death."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def this_host() -> str:
    return socket.gethostname()


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_batch(batch_size: int, world: World, what: str) -> None:
    if batch_size % world.size:
        raise ConfigError(
            f"{what} = {batch_size} must be divisible by the number of processes ({world.size})"
        )
