import numpy as np
import pytest
import torch

from leaveout import NotFittedError, create_detector
from leaveout.detectors.mahalanobis import GaussianAccumulator


def fitted(feats: np.ndarray, y: np.ndarray, num: int, batch: int):
    accumulator = GaussianAccumulator(num)
    for start in range(0, len(y), batch):
        accumulator.add(
            torch.tensor(feats[start : start + batch]), torch.tensor(y[start : start + batch])
        )
    return accumulator.fit()


def small_train(sets, per_class=40):
    train = sets["train"]
    keep = np.concatenate(
        [np.flatnonzero(train.labels == c)[:per_class] for c in range(train.num_classes)]
    )
    return train.subset(keep)


def test_gaussian_fit_against_numpy_and_streaming_invariance(ensemble, sets):
    member, m = ensemble.members[0], 0
    labels = ensemble.partition.to_member_labels(m, sets["train"].labels)
    keep = np.flatnonzero(labels >= 0)[:300]
    images, y = sets["train"].images[keep], labels[keep]
    num = ensemble.partition.member_num_classes(m)
    with torch.no_grad():
        feats = member.forward_features(next(ensemble.batches(images, 1000))).double().numpy()
    fit, small = fitted(feats, y, num, 64), fitted(feats, y, num, 7)
    torch.testing.assert_close(fit.means, small.means)
    torch.testing.assert_close(fit.precision, small.precision, rtol=1e-6, atol=1e-6)

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
    detector.fit_statistics(small_train(sets))
    images = sets["test"].images[:30]
    plain = detector.score_samples(images)
    assert plain.shape == (30,) and (plain <= 0).all()
    stepped = detector.set_params(epsilon=0.002).score_samples(images)
    assert stepped.mean() > plain.mean()  # the step moves inputs closer to their nearest class
    noise = np.random.default_rng(0).integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    assert detector.set_params(epsilon=0.0).score_samples(noise).mean() < plain.mean()


def test_statistics_round_trip_and_member_views(ensemble, sets):
    detector = create_detector("mahalanobis", ensemble).fit_statistics(small_train(sets, 30))
    again = create_detector("mahalanobis", ensemble).load_state_dict(detector.state_dict())
    images = sets["test"].images[:10]
    np.testing.assert_array_equal(again.score_samples(images), detector.score_samples(images))
    views = [detector.member_view(m).score_samples(images) for m in range(ensemble.k)]
    np.testing.assert_allclose(np.sum(views, axis=0), detector.score_samples(images), rtol=1e-12)


def test_fits_from_a_loader_and_from_features_equal_the_image_set_fit(ensemble, sets):
    train = small_train(sets, 30)
    reference = create_detector("mahalanobis", ensemble).fit_statistics(train)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(
            torch.from_numpy(train.images), torch.from_numpy(train.labels)
        ),
        batch_size=50,
    )
    streamed = create_detector("mahalanobis", ensemble).fit_statistics(loader)
    with torch.no_grad():
        x = next(ensemble.batches(train.images, 10_000))
        features = [member.forward_features(x) for member in ensemble.networks()]
    direct = create_detector("mahalanobis", ensemble).fit_features(
        features, torch.from_numpy(train.labels)
    )
    for other in (streamed, direct):
        for a, b in zip(reference.fits_, other.fits_):
            torch.testing.assert_close(a.means, b.means, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(a.precision, b.precision, rtol=1e-3, atol=1e-3)


def test_a_bf16_detector_fits_on_bf16_features(ensemble, sets):
    train = small_train(sets, 30)
    fitted_bf16 = create_detector("mahalanobis", ensemble, amp="bf16").fit_statistics(train)
    x = next(ensemble.batches(train.images, 10_000))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        features = [member.forward_features(x).float() for member in ensemble.networks()]
    expected = create_detector("mahalanobis", ensemble).fit_features(
        features, torch.from_numpy(train.labels)
    )
    float32 = create_detector("mahalanobis", ensemble).fit_statistics(train)
    for a, b, c in zip(fitted_bf16.fits_, expected.fits_, float32.fits_):
        torch.testing.assert_close(a.means, b.means, rtol=1e-5, atol=1e-6)
        assert (a.means - c.means).abs().max() > 1e-4  # not the float32 fit
