import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from leaveout import ConfigError, NotFittedError, create_detector
from leaveout.detectors.knn import kth_neighbour_distances

from .conftest import float64_features, kept_rows


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def fitted(ensemble, sets):
    return create_detector("knn", ensemble).fit_statistics(sets["train"])


def test_knn_scores_equal_scikit_learns_neighbours(ensemble, sets, fitted):
    train, images = sets["train"], sets["test"].images[:40]
    train_features = float64_features(ensemble, train.images)
    test_features = float64_features(ensemble, images)
    ks = (1, 10, 50)
    expected = np.zeros((len(ks), len(images)))
    for m in range(ensemble.k):
        bank = unit(train_features[m][kept_rows(ensemble, train.labels, m)])
        search = NearestNeighbors(n_neighbors=max(ks)).fit(bank)
        distances, _ = search.kneighbors(unit(test_features[m]))
        expected -= distances[:, [k - 1 for k in ks]].T
    got = fitted.score_grid(images, [{"k": k} for k in ks])
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(fitted.score_samples(images), expected[2], rtol=1e-5)  # k = 50


def test_chunked_search_equals_the_whole_distance_matrix():
    rng = np.random.default_rng(0)
    bank, queries = unit(rng.normal(size=(300, 16))), unit(rng.normal(size=(25, 16)))
    whole = np.sort(np.linalg.norm(queries[:, None] - bank[None], axis=2), axis=1)
    ks = (1, 3, 17, 300)
    expected = whole[:, [k - 1 for k in ks]].T
    for chunk in (1, 7, 64, 299, 300, 10_000):
        got = kth_neighbour_distances(torch.tensor(queries), torch.tensor(bank), ks, chunk)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-7)


def test_the_bank_is_float32_unit_rows_of_the_kept_classes(ensemble, sets, fitted):
    labels = sets["train"].labels
    for m in range(ensemble.k):
        bank = fitted.state_dict()[f"bank.{m}"]
        assert bank.dtype == torch.float32
        assert len(bank) == kept_rows(ensemble, labels, m).sum()
        torch.testing.assert_close(bank.double().norm(dim=1), torch.ones(len(bank)).double())


def test_statistics_round_trip_member_views_and_errors(ensemble, sets, fitted):
    images = sets["test"].images[:10]
    with pytest.raises(NotFittedError, match="training images"):
        create_detector("knn", ensemble).score_samples(images)
    again = create_detector("knn", ensemble).load_state_dict(fitted.state_dict())
    np.testing.assert_array_equal(again.score_samples(images), fitted.score_samples(images))
    views = [fitted.member_view(m).score_samples(images) for m in range(ensemble.k)]
    np.testing.assert_allclose(np.sum(views, axis=0), fitted.score_samples(images), rtol=1e-12)
    with pytest.raises(ConfigError, match="k must lie in"):
        fitted.score_grid(images, [{"k": 100_000}])
