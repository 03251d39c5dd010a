import numpy as np
import torch

from leaveout import create_detector
from leaveout.detectors.msp import msp

from ..helpers import float64_copies, normalised_float64
from .conftest import softmax64


def test_msp_against_float64():
    z = np.random.default_rng(0).normal(0, 5, (6, 4))
    for t in (1.0, 10.0, 1000.0):
        np.testing.assert_allclose(
            msp(torch.tensor(z), t).numpy(), softmax64(z / t).max(1), rtol=1e-12
        )


def test_msp_scores_sum_over_members(ensemble, sets):
    images = sets["test"].images[:20]
    x, _ = normalised_float64(ensemble, images)
    expected = sum(
        softmax64(net(x).detach().numpy() / 2.0).max(1) for net in float64_copies(ensemble)
    )
    got = create_detector("msp", ensemble, temperature=2.0).score_samples(images)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
