"""Data parallelism under torchrun.

Under `torchrun --nproc_per_node N -m leaveout train ...` every process trains the same member on
its shard of each global batch (DistributedDataParallel: gloo on CPU, nccl on CUDA); only rank 0
writes files. (Members run as separate jobs share a run directory through `RunDir.lock`.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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


def check_batch(batch_size: int, world: World, what: str) -> None:
    if batch_size % world.size:
        raise ConfigError(
            f"{what} = {batch_size} must be divisible by the number of processes ({world.size})"
        )
