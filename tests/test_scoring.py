import numpy as np
import pytest
import torch

from leaveout import ShapeError
from leaveout.losses import entropy
from leaveout.scoring import LeaveOutEnsemble, PytorchOODAdapter
from leaveout.training import load_splits

from .helpers import float64_copies, normalised_float64


@pytest.fixture(scope="module")
def ensemble(digits_run):
    _, run_dir, _ = digits_run
    return LeaveOutEnsemble.load(run_dir)


@pytest.fixture(scope="module")
def images(digits_run):
    cfg, _, _ = digits_run
    test = load_splits(cfg, None)["test"]
    return test.images[:40], test.labels[:40]


def reference_scores(ensemble, images, temperature, epsilon):
    """The score written out again in float64: a double copy of every member, numpy softmax."""
    x, std = normalised_float64(ensemble, images)
    total = np.zeros(len(images))
    for net in float64_copies(ensemble):
        xi = x.clone().requires_grad_(True)
        logits = net(xi) / temperature
        p = torch.softmax(logits, 1)
        h = -(p * torch.log(p)).sum()
        h.backward()
        stepped = (x - epsilon * torch.sign(xi.grad) / std).detach()
        z = (net(stepped) / temperature).detach().numpy()
        z = z - z.max(1, keepdims=True)
        q = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        total += q.max(1) + (q * np.log(q)).sum(1)
    return total


@pytest.mark.parametrize(("temperature", "epsilon"), [(1.0, 0.002), (1000.0, 0.0014), (10.0, 0.0)])
def test_score_matches_an_independent_float64_computation(ensemble, images, temperature, epsilon):
    x, _ = images
    got = ensemble.score(x, temperature, epsilon)
    expected = reference_scores(ensemble, x, temperature, epsilon)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_eps_zero_is_the_unperturbed_score(ensemble, images):
    x, _ = images
    with torch.no_grad():
        batch = next(ensemble.batches(x, 1000))
        expected = sum(
            (torch.softmax(m(batch) / 10, 1).amax(1) - entropy(m(batch) / 10)).double()
            for m in ensemble.members
        )
    np.testing.assert_allclose(ensemble.score(x, 10.0, 0.0), expected.numpy(), rtol=1e-6)


def test_the_step_lowers_each_members_entropy(ensemble, images):
    x, _ = images
    batch = next(ensemble.batches(x, 1000))
    for member in ensemble.members:
        direction = ensemble.step_direction(member, batch, 1.0)
        with torch.no_grad():
            before = entropy(member(batch)).mean()
            after = entropy(member(batch - 0.002 * direction)).mean()
        assert after < before


def test_no_parameter_gradients_are_accumulated(ensemble, images):
    ensemble.score(images[0], 1000.0, 0.002)
    assert all(
        p.grad is None and not p.requires_grad for m in ensemble.members for p in m.parameters()
    )


def test_batch_of_one_and_of_64_agree(ensemble, images):
    x, _ = images
    np.testing.assert_allclose(
        ensemble.score(x, 1000.0, 0.002, batch_size=1),
        ensemble.score(x, 1000.0, 0.002, batch_size=64),
        rtol=1e-5,
        atol=1e-6,
    )


def test_predict_gives_every_class_k_minus_1_votes(ensemble, images):
    x, labels = images
    k, classes = ensemble.k, len(ensemble.classes)
    votes = np.zeros(classes, dtype=int)
    for m in range(k):
        votes[list(ensemble.partition.kept(m))] += 1
    assert (votes == k - 1).all()
    proba = ensemble.predict_proba(x)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    for m in range(k):  # zero-padding: a member adds nothing at its left-out classes
        assert len(set(ensemble.partition.left_out(m)) & set(ensemble.partition.kept(m))) == 0
    assert (ensemble.predict(x) == labels).mean() > 0.5


def test_scoring_grid_equals_single_scores(ensemble, images):
    x, _ = images
    grid = ensemble.member_scores_grid(x, [1.0, 100.0], [0.0, 0.001])
    assert grid.shape == (2, 2, ensemble.k, len(x))
    np.testing.assert_allclose(grid[1, 1].sum(0), ensemble.score(x, 100.0, 0.001), rtol=1e-6)


def test_normalised_float_input_gives_the_same_score(ensemble, images):
    x, _ = images
    floats = ensemble.normalization(torch.from_numpy(x))
    np.testing.assert_allclose(
        ensemble.score(floats, 1000.0, 0.002), ensemble.score(x, 1000.0, 0.002), rtol=1e-6
    )


def test_wrong_inputs_are_clear_errors(ensemble):
    with pytest.raises(ShapeError, match=r"\(N, H, W, 3\)"):
        ensemble.score(np.zeros((2, 16, 16, 1), np.uint8))
    with pytest.raises(ShapeError, match="trained on"):
        ensemble.score(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ShapeError, match="NaN"):
        ensemble.score(torch.full((2, 3, 16, 16), float("nan")))


def test_pytorch_ood_adapter_returns_outlier_scores(ensemble, images):
    x, _ = images
    detector = PytorchOODAdapter(ensemble, temperature=1000.0, epsilon=0.0).fit(None)
    floats = ensemble.normalization(torch.from_numpy(x))
    outlier = detector.predict(floats)
    assert isinstance(outlier, torch.Tensor) and outlier.shape == (len(x),)
    np.testing.assert_allclose(-outlier.numpy(), ensemble.score(x, 1000.0, 0.0), rtol=1e-6)
    with torch.no_grad():
        logits = [m(floats) for m in ensemble.members]
    np.testing.assert_allclose(
        detector.predict_features(logits).numpy(), outlier.numpy(), rtol=1e-5
    )
