import numpy as np
import pytest
import torch

from leaveout import ConfigError, create_detector
from leaveout.detectors.ash import shaped

from .conftest import float64_features, float64_head, logsumexp64


def test_a_hand_worked_example():
    f = torch.tensor([[1.0, 4.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
    # p = 50 keeps the two largest (4 and 3); the sums are 10 before and 7 after pruning
    np.testing.assert_allclose(shaped(f, 50, "p")[0].numpy(), [0, 4, 0, 3])
    np.testing.assert_allclose(shaped(f, 50, "b")[0].numpy(), [0, 5, 0, 5])
    np.testing.assert_allclose(
        shaped(f, 50, "s")[0].numpy(), np.array([0, 4, 0, 3]) * np.exp(10 / 7), rtol=1e-15
    )
    for variant in ("s", "b", "p"):
        assert not shaped(f, 50, variant)[1].any()  # an all-zero row stays zero
    with pytest.raises(ConfigError, match="keeps no activation"):
        shaped(f, 95)


def ash_reference(features, weight, bias, percentile, variant):
    """ASH from the paper's description in float64 numpy, then the energy."""
    n = features.shape[1]
    kept = n - int(np.round(n * percentile / 100))
    order = np.argsort(-features, axis=1)[:, :kept]
    rows = np.arange(len(features))[:, None]
    out = np.zeros_like(features)
    before = features.sum(1)
    if variant == "b":
        out[rows, order] = (before / kept)[:, None]
    else:
        out[rows, order] = features[rows, order]
    if variant == "s":
        out *= np.exp(before / out.sum(1))[:, None]
    return logsumexp64(out @ weight.T + bias)


@pytest.mark.parametrize("variant", ["s", "b", "p"])
def test_ash_scores_equal_a_float64_computation(ensemble, sets, variant):
    images = sets["test"].images[:40]
    features = float64_features(ensemble, images)
    percentiles = (65, 90)
    expected = np.zeros((len(percentiles), len(images)))
    for m in range(ensemble.k):
        for i, p in enumerate(percentiles):
            expected[i] += ash_reference(features[m], *float64_head(ensemble, m), p, variant)
    detector = create_detector("ash", ensemble, variant=variant)
    got = detector.score_grid(images, [{"percentile": p} for p in percentiles])
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(detector.score_samples(images), expected[1], rtol=1e-5)


def test_an_unknown_variant_is_refused(ensemble, sets):
    with pytest.raises(ConfigError, match="variant"):
        create_detector("ash", ensemble, variant="x").score_samples(sets["test"].images[:2])
