import numpy as np
import pytest
import torch

from leaveout import create_detector
from leaveout.detectors.gen import generalized_entropy

from ..helpers import float64_copies, normalised_float64
from .conftest import softmax64


def test_a_hand_worked_example():
    # softmax (0.5, 0.5): each term 0.5^g 0.5^g; softmax (0.8, 0.2) at gamma = 1: 2 x 0.16
    logits = torch.tensor([[0.0, 0.0], [np.log(4.0), 0.0]])
    np.testing.assert_allclose(generalized_entropy(logits, 1.0, 2).numpy(), [0.5, 0.32])
    np.testing.assert_allclose(generalized_entropy(logits, 1.0, 1).numpy(), [0.25, 0.16])
    np.testing.assert_allclose(generalized_entropy(logits, 0.5, 100).numpy(), [1.0, 0.8])


def gen_reference(logits: np.ndarray, gamma: float, top: int) -> np.ndarray:
    probs = np.sort(softmax64(logits), axis=1)[:, ::-1][:, :top]
    return -(probs**gamma * (1 - probs) ** gamma).sum(1)


@pytest.mark.parametrize(("gamma", "top"), [(0.1, 100), (0.5, 2), (0.01, 5)])
def test_gen_scores_equal_a_float64_computation(ensemble, sets, gamma, top):
    images = sets["test"].images[:40]
    x, _ = normalised_float64(ensemble, images)
    with torch.no_grad():
        expected = sum(
            gen_reference(net(x).numpy(), gamma, top) for net in float64_copies(ensemble)
        )
    detector = create_detector("gen", ensemble, gamma=gamma, top_classes=top)
    np.testing.assert_allclose(detector.score_samples(images), expected, rtol=1e-5)
