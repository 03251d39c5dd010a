import numpy as np
import pytest
import torch

from leaveout import NotFittedError, create_detector
from leaveout.detectors.mahalanobis import fit_gaussian


def test_gaussian_fit_against_numpy_and_streaming_invariance(ensemble, sets):
    member, m = ensemble.members[0], 0
    labels = ensemble.partition.to_member_labels(m, sets["train"].labels)
    keep = np.flatnonzero(labels >= 0)[:300]
    images, y = sets["train"].images[keep], labels[keep]
    num = ensemble.partition.member_num_classes(m)
    fit = fit_gaussian(member, ensemble, images, y, num, batch_size=64)
    small = fit_gaussian(member, ensemble, images, y, num, batch_size=7)
    torch.testing.assert_close(fit.means, small.means)
    torch.testing.assert_close(fit.precision, small.precision, rtol=1e-6, atol=1e-6)

    with torch.no_grad():
        feats = member.forward_features(next(ensemble.batches(images, 1000))).double().numpy()
    means = np.stack([feats[y == c].mean(0) for c in range(num)])
    centred = feats - means[y]
    cov = centred.T @ centred / len(feats)
    precision = np.linalg.pinv(cov, hermitian=True)
    np.testing.assert_allclose(fit.means.numpy(), means, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fit.precision.numpy(), precision, rtol=1e-4, atol=1e-6)

    test = feats[:5]
    dist = fit.distances(torch.tensor(test)).numpy()
    expected = np.array([[(f - mu) @ precision @ (f - mu) for mu in means] for f in test])
    np.testing.assert_allclose(dist, expected, rtol=1e-5, atol=1e-6)


def test_mahalanobis_scores_and_input_step(ensemble, sets):
    detector = create_detector("mahalanobis", ensemble)
    with pytest.raises(NotFittedError, match="training images"):
        detector.score_samples(sets["test"].images[:3])
    detector.fit_statistics(sets["train"], max_per_class=60)
    images = sets["test"].images[:30]
    plain = detector.score_samples(images)
    assert plain.shape == (30,) and (plain <= 0).all()
    stepped = detector.set_params(epsilon=0.002).score_samples(images)
    assert stepped.mean() > plain.mean()  # the step moves inputs closer to their nearest class
    noise = np.random.default_rng(0).integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    assert detector.set_params(epsilon=0.0).score_samples(noise).mean() < plain.mean()


def test_statistics_round_trip_and_member_views(ensemble, sets):
    detector = create_detector("mahalanobis", ensemble).fit_statistics(
        sets["train"], max_per_class=30
    )
    again = create_detector("mahalanobis", ensemble).load_state_dict(detector.state_dict())
    images = sets["test"].images[:10]
    np.testing.assert_array_equal(again.score_samples(images), detector.score_samples(images))
    views = [detector.member_view(m).score_samples(images) for m in range(ensemble.k)]
    np.testing.assert_allclose(np.sum(views, axis=0), detector.score_samples(images), rtol=1e-12)
