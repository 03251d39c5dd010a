import numpy as np
import pytest
import torch

from leaveout import ConfigError, create_detector
from leaveout.detectors.react import percentile_thresholds

from .conftest import float64_features, float64_head, kept_rows, logsumexp64


def test_thresholds_equal_numpys_percentiles():
    values = np.random.default_rng(0).gamma(2.0, size=(257, 13))
    table = percentile_thresholds(torch.tensor(values)).numpy()
    assert table.shape == (10_001,)
    for q in (0, 0.01, 12.34, 80, 90, 99, 99.99, 100):
        assert table[round(q * 100)] == pytest.approx(np.percentile(values, q), rel=1e-12)


def test_react_scores_equal_clipped_energy_in_float64(ensemble, sets):
    train, images = sets["train"], sets["test"].images[:40]
    detector = create_detector("react", ensemble).fit_statistics(train)
    train_features = float64_features(ensemble, train.images)
    test_features = float64_features(ensemble, images)
    percentiles = (80, 90, 99)
    expected = np.zeros((len(percentiles), len(images)))
    for m in range(ensemble.k):
        activations = train_features[m][kept_rows(ensemble, train.labels, m)].ravel()
        weight, bias = float64_head(ensemble, m)
        for i, p in enumerate(percentiles):
            clipped = np.minimum(test_features[m], np.percentile(activations, p))
            expected[i] += logsumexp64(clipped @ weight.T + bias)
    got = detector.score_grid(images, [{"percentile": p} for p in percentiles])
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(detector.score_samples(images), expected[1], rtol=1e-5)
    # clipping changes the scores: plain energy differs
    plain = create_detector("energy", ensemble).score_samples(images)
    assert np.abs(plain - expected[1]).max() > 1e-3


def test_member_views_round_trip_and_an_off_grid_percentile(ensemble, sets):
    detector = create_detector("react", ensemble).fit_statistics(sets["train"])
    images = sets["test"].images[:10]
    again = create_detector("react", ensemble).load_state_dict(detector.state_dict())
    np.testing.assert_array_equal(again.score_samples(images), detector.score_samples(images))
    views = [detector.member_view(m).score_samples(images) for m in range(ensemble.k)]
    np.testing.assert_allclose(np.sum(views, axis=0), detector.score_samples(images), rtol=1e-12)
    with pytest.raises(ConfigError, match="0.01 grid"):
        detector.score_grid(images, [{"percentile": 90.001}])
