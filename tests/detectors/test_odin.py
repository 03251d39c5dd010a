import numpy as np
import pytest
import torch

from leaveout import create_detector

from ..helpers import float64_copies, normalised_float64
from .conftest import softmax64


@pytest.mark.parametrize(("t", "eps"), [(1000.0, 0.0014), (1.0, 0.002), (10.0, 0.0)])
def test_odin_against_an_independent_float64_computation(ensemble, sets, t, eps):
    images = sets["test"].images[:25]
    x, std = normalised_float64(ensemble, images)
    expected = np.zeros(len(images))
    for net in float64_copies(ensemble):
        xi = x.clone().requires_grad_(True)
        logits = net(xi) / t
        loss = torch.nn.functional.cross_entropy(logits, logits.argmax(1), reduction="sum")
        loss.backward()
        stepped = (x - eps * torch.sign(xi.grad) / std).detach()
        expected += softmax64(net(stepped).detach().numpy() / t).max(1)
    got = create_detector("odin", ensemble, temperature=t, epsilon=eps).score_samples(images)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_odin_defaults_are_odins_cifar10_values(ensemble):
    detector = create_detector("odin", ensemble)
    assert detector.hyperparameters() == {"temperature": 1000.0, "epsilon": 0.0014}
