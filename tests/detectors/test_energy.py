import numpy as np
import torch

from leaveout import create_detector
from leaveout.detectors.energy import energy

from ..helpers import float64_copies, normalised_float64
from .conftest import logsumexp64


def test_energy_against_float64():
    z = np.random.default_rng(0).normal(0, 5, (6, 4))
    for t in (1.0, 10.0, 1000.0):
        expected = t * logsumexp64(z / t)
        np.testing.assert_allclose(energy(torch.tensor(z), t).numpy(), expected, rtol=1e-12)


def test_energy_scores_sum_over_members(ensemble, sets):
    images = sets["test"].images[:20]
    x, _ = normalised_float64(ensemble, images)
    expected = sum(
        10.0 * logsumexp64(net(x).detach().numpy() / 10.0) for net in float64_copies(ensemble)
    )
    got = create_detector("energy", ensemble, temperature=10.0).score_samples(images)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
