"""Where tensors live: device names from the command line, mixed precision, and the CPU's
memory allocator."""

from __future__ import annotations

import contextlib
import ctypes
import sys

import torch
from torch import nn

from .errors import ConfigError

DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N"

# glibc's mallopt options (malloc.h) and the values `keep_freed_memory` gives them
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
KEPT_MEMORY = {
    M_MMAP_THRESHOLD: 32 * 2**20,  # blocks up to 32 MiB come from the heap (glibc's maximum)
    M_TRIM_THRESHOLD: 2**31 - 1,  # and freed heap memory is kept for the next allocation
    M_TOP_PAD: 256 * 2**20,
}


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks of up to 32 MiB for reuse instead of returning them
    to the kernel. Every training step and scoring batch allocates the same large tensors again,
    and each fresh page costs a page fault: on the 2-core machine of docs/benchmarks.md this
    makes a training step about 15-20% faster. Process-wide and cheap to repeat; the command line,
    `training.train` and the benchmarks call it. Returns False where it does not apply (not
    glibc), and changes nothing there."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return all(libc.mallopt(option, value) == 1 for option, value in KEPT_MEMORY.items())


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The device `name` means; an unknown or absent device is a ConfigError."""
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {name!r}; use {DEVICE_HELP}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name} was asked for, but torch sees no CUDA device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {name}: torch sees {torch.cuda.device_count()} CUDA devices"
            )
    elif device.type == "mps":
        raise ConfigError(
            "--device mps is not supported: the scores are computed in float64, which MPS lacks; "
            "use cpu"
        )
    elif device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {name!r}; use {DEVICE_HELP}")
    return device


def check_amp(device: torch.device, amp: str) -> None:
    """fp16 needs CUDA (loss scaling); bf16 runs on the CPU and on CUDA."""
    if amp not in ("none", "bf16", "fp16"):
        raise ConfigError(f"amp must be none, bf16 or fp16, got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp = 'fp16' needs a CUDA device; use 'bf16' on the CPU")


def amp_suffix(amp: str) -> str:
    """What a cache key or folder name adds for `amp`: nothing for float32, "-bf16" for bf16."""
    return "" if amp == "none" else f"-{amp}"


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """torch.autocast for `amp` ("none", "bf16", "fp16") on `device`."""
    if amp == "none":
        return contextlib.nullcontext()
    check_amp(device, amp)
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


class Autocast(nn.Module):
    """`network` run under autocast (`amp`), its outputs returned in float32: mixed precision for
    the network only, while what is computed from its outputs keeps its own precision."""

    def __init__(self, network: nn.Module, amp: str, device: torch.device) -> None:
        super().__init__()
        check_amp(device, amp)
        self.network, self.amp, self.device = network, amp, device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.amp):
            return self.network(x).float()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.amp):
            return self.network.forward_features(x).float()
