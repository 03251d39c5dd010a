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


def float64_features(ensemble, images: np.ndarray) -> list[np.ndarray]:
    """Each member's penultimate features (N, D) of uint8 images, from float64 copies."""
    import torch

    from ..helpers import float64_copies, normalised_float64

    x, _ = normalised_float64(ensemble, images)
    with torch.no_grad():
        return [net.forward_features(x).numpy() for net in float64_copies(ensemble)]


def float64_head(ensemble, member: int) -> tuple[np.ndarray, np.ndarray]:
    """Member `member`'s last layer (W, b) as float64 numpy (b = 0 without a bias)."""
    layer = ensemble.members[member].classifier
    weight = layer.weight.detach().double().numpy()
    bias = np.zeros(len(weight)) if layer.bias is None else layer.bias.detach().double().numpy()
    return weight, bias


def kept_rows(ensemble, labels: np.ndarray, member: int) -> np.ndarray:
    """Which of the dataset labels belong to the member's kept classes (N,) bool."""
    return ensemble.partition.to_member_labels(member, labels) >= 0
