import platform
import subprocess
import sys

import pytest
import torch

from leaveout import ConfigError
from leaveout.devices import autocast, resolve_device


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    assert resolve_device(None) == resolve_device("auto")
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(ConfigError, match="float64"):
        resolve_device("mps")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda:0")


def test_fp16_needs_cuda():
    with pytest.raises(ConfigError, match="fp16"), autocast(torch.device("cpu"), "fp16"):
        pass
    with autocast(torch.device("cpu"), "bf16"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16


FAULTS = """
import resource, sys, torch
from leaveout.devices import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
def step():  # six 20 MiB tensors alive together, then freed, like a training step's activations
    blocks = [torch.empty(5 * 2**20).fill_(1.0) for _ in range(6)]
    del blocks
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="keep_freed_memory sets glibc's malloc",
)
def test_kept_memory_serves_repeated_large_allocations_without_new_page_faults():
    def faults(mode: str) -> tuple[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", FAULTS, mode], check=True, capture_output=True, text=True
        ).stdout.split()
        return out[0], int(out[1])

    default, kept = faults("default"), faults("keep")
    block = 20 * 2**20 // 4096  # pages of one tensor
    assert kept[0] == "True"
    assert default[1] > 4 * block  # glibc hands freed memory back and faults it in again
    assert kept[1] <= 2 * block  # kept: later steps reuse it (the heap may grow once)
