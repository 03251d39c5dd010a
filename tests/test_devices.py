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
