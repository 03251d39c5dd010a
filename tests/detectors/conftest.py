import numpy as np
import pytest

from leaveout import LeaveOutEnsemble
from leaveout.data import load_run_sets


@pytest.fixture(scope="package")
def ensemble(digits_run):
    _, run_dir, _ = digits_run
    return LeaveOutEnsemble.load(run_dir)


@pytest.fixture(scope="package")
def sets(digits_run):
    cfg, _, _ = digits_run
    return load_run_sets(cfg.data, cfg.train.seed)


def softmax64(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(1, keepdims=True)


def logsumexp64(z: np.ndarray) -> np.ndarray:
    top = z.max(1)
    return top + np.log(np.exp(z - top[:, None]).sum(1))
