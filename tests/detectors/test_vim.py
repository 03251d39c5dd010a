import copy

import numpy as np
import pytest
import torch
from torch import nn

from leaveout import ConfigError, LeaveOutEnsemble, create_detector

from .conftest import float64_features, float64_head, kept_rows, logsumexp64


def vim_reference(train, test, weight, bias, dimension):
    """ViM from the paper's formulas in float64 numpy: energy - alpha x residual norm."""
    origin = -np.linalg.pinv(weight) @ bias
    centred = train - origin
    _, vectors = np.linalg.eigh(centred.T @ centred / len(centred))  # ascending
    complement = vectors[:, : train.shape[1] - dimension]
    residual = np.linalg.norm(centred @ complement, axis=1)
    alpha = (train @ weight.T + bias).max(1).mean() / residual.mean()
    test_residual = np.linalg.norm((test - origin) @ complement, axis=1)
    return logsumexp64(test @ weight.T + bias) - alpha * test_residual


def test_vim_scores_equal_the_papers_formulas(ensemble, sets):
    train, images = sets["train"], sets["test"].images[:40]
    detector = create_detector("vim", ensemble).fit_statistics(train)
    train_features = float64_features(ensemble, train.images)
    test_features = float64_features(ensemble, images)
    fractions = (0.25, 0.5, 0.75)
    expected = np.zeros((len(fractions), len(images)))
    for m in range(ensemble.k):
        dim = train_features[m].shape[1]
        kept = train_features[m][kept_rows(ensemble, train.labels, m)]
        for i, fraction in enumerate(fractions):
            expected[i] += vim_reference(
                kept, test_features[m], *float64_head(ensemble, m), round(fraction * dim)
            )
    got = detector.score_grid(images, [{"principal_fraction": f} for f in fractions])
    # float32 features against float64: a score is a difference of terms of size ~5, so a
    # score near 0 is held to an absolute tolerance at that scale
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(detector.score_samples(images), expected[1], rtol=1e-4, atol=1e-4)


def test_without_a_bias_the_origin_is_zero_and_fit_features_matches(ensemble, sets):
    single = ensemble.single(0)
    net = copy.deepcopy(ensemble.members[0])
    layer = net.classifier
    net.classifier = nn.Linear(layer.in_features, layer.out_features, bias=False)
    net.classifier.weight.data.copy_(layer.weight.data)
    unbiased = LeaveOutEnsemble(
        [net], single.classes, single.normalization, image_size=single.image_size
    )
    train, images = sets["train"], sets["test"].images[:30]
    keep = kept_rows(ensemble, train.labels, 0)
    member_labels = torch.from_numpy(ensemble.partition.to_member_labels(0, train.labels[keep]))
    with torch.no_grad():
        features = net.forward_features(next(unbiased.batches(train.images[keep], 10_000)))
    detector = create_detector("vim", unbiased).fit_features([features], member_labels)
    assert not detector.state_dict()["origin.0"].any()
    weight, _ = float64_head(unbiased, 0)
    expected = vim_reference(
        float64_features(ensemble, train.images[keep])[0],
        float64_features(ensemble, images)[0],
        weight,
        np.zeros(len(weight)),
        round(0.5 * features.shape[1]),
    )
    np.testing.assert_allclose(detector.score_samples(images), expected, rtol=1e-4)


def test_streamed_and_precomputed_fits_agree_and_an_iterator_is_refused(ensemble, sets):
    train, images = sets["train"], sets["test"].images[:20]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(
            torch.from_numpy(train.images), torch.from_numpy(train.labels)
        ),
        batch_size=64,
    )
    streamed = create_detector("vim", ensemble).fit_statistics(loader)
    with torch.no_grad():
        x = next(ensemble.batches(train.images, 10_000))
        features = [member.forward_features(x) for member in ensemble.networks()]
    direct = create_detector("vim", ensemble).fit_features(features, torch.from_numpy(train.labels))
    np.testing.assert_allclose(
        streamed.score_samples(images), direct.score_samples(images), rtol=1e-6
    )
    again = create_detector("vim", ensemble).load_state_dict(direct.state_dict())
    np.testing.assert_array_equal(again.score_samples(images), direct.score_samples(images))
    with pytest.raises(ConfigError, match="twice"):
        create_detector("vim", ensemble).fit_statistics(iter(loader))
    with pytest.raises(ConfigError, match="residual"):
        direct.score_grid(images, [{"principal_fraction": 1.0}])
