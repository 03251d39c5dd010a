import numpy as np
import pytest


@pytest.fixture(scope="session")
def ensemble(digits_ensemble):
    return digits_ensemble


@pytest.fixture(scope="session")
def sets(digits_sets):
    return digits_sets


def softmax64(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(1, keepdims=True)


def logsumexp64(z: np.ndarray) -> np.ndarray:
    top = z.max(1)
    return top + np.log(np.exp(z - top[:, None]).sum(1))
