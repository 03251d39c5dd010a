import numpy as np
import pytest
import torch

from leaveout import ConfigError, create_detector
from leaveout.detectors.leaveout import member_score
from leaveout.detectors.perturb import entropy_objective, step_directions
from leaveout.losses import entropy

from ..helpers import float64_copies, normalised_float64


@pytest.fixture(scope="module")
def images(sets):
    return sets["test"].images[:40]


def leaveout(ensemble, temperature, epsilon, **settings):
    return create_detector(
        "leaveout", ensemble, temperature=temperature, epsilon=epsilon, **settings
    )


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
    got = leaveout(ensemble, temperature, epsilon).score_samples(images)
    expected = reference_scores(ensemble, images, temperature, epsilon)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_member_scores_are_float64_from_the_logits(ensemble, sets):
    """At T = 5000 the separating part of the score is ~1e-3 wide: float32 made ties."""
    images = np.concatenate([sets["val"].images, sets["test"].images])[:600]
    scores = leaveout(ensemble, 5000.0, 0.0).score_samples(images)
    expected = np.zeros(len(images))
    with torch.no_grad():
        batch = next(ensemble.batches(images, 1000))
        for member in ensemble.networks():  # the logits as scoring computes them
            z = member(batch).double().numpy() / 5000.0
            z = z - z.max(1, keepdims=True)
            q = np.exp(z) / np.exp(z).sum(1, keepdims=True)
            expected += q.max(1) + (q * np.log(q)).sum(1)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)
    assert len(np.unique(scores)) == len(np.unique(images.reshape(len(images), -1), axis=0))


def test_member_score_against_a_hand_worked_example():
    logits = torch.tensor([[np.log(3.0), 0.0]], dtype=torch.float64)  # softmax (3/4, 1/4)
    h = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    assert member_score(logits, 1.0).item() == pytest.approx(0.75 - h, abs=1e-15)
    assert member_score(logits, 1.0, "msp").item() == pytest.approx(0.75, abs=1e-15)


def test_eps_zero_is_the_unperturbed_score(ensemble, images):
    with torch.no_grad():
        batch = next(ensemble.batches(images, 1000))
        expected = sum(member_score(m(batch).double(), 10.0) for m in ensemble.networks())
    np.testing.assert_allclose(
        leaveout(ensemble, 10.0, 0.0).score_samples(images), expected.numpy(), rtol=1e-12
    )


def test_the_step_lowers_each_members_entropy(ensemble, images):
    batch = next(ensemble.batches(images, 1000))
    std = ensemble.normalization.std_tensor()
    for member in ensemble.members:
        _, (direction,) = step_directions(member, batch, [entropy_objective(1.0)], std)
        with torch.no_grad():
            before = entropy(member(batch)).mean()
            after = entropy(member(batch - 0.002 * direction)).mean()
        assert after < before


def test_no_parameter_gradients_are_accumulated(ensemble, images):
    leaveout(ensemble, 1000.0, 0.002).score_samples(images[:5])
    assert all(
        p.grad is None and not p.requires_grad for m in ensemble.members for p in m.parameters()
    )


def test_batch_of_one_and_of_64_agree(ensemble, images):
    np.testing.assert_allclose(
        leaveout(ensemble, 1000.0, 0.002, batch_size=1).score_samples(images),
        leaveout(ensemble, 1000.0, 0.002, batch_size=64).score_samples(images),
        rtol=1e-5,
        atol=1e-6,
    )


def test_scoring_grid_equals_single_scores(ensemble, images):
    detector = leaveout(ensemble, 1.0, 0.0)
    points = [{"temperature": t, "epsilon": e} for t in (1.0, 100.0) for e in (0.0, 0.001)]
    grid = detector.score_grid(images, points)
    assert grid.shape == (4, len(images))
    single = leaveout(ensemble, 100.0, 0.001).score_samples(images)
    np.testing.assert_allclose(grid[3], single, rtol=1e-12)


def test_normalised_float_input_gives_the_same_score(ensemble, images):
    floats = ensemble.normalization(torch.from_numpy(images))
    detector = leaveout(ensemble, 1000.0, 0.002)
    np.testing.assert_allclose(
        detector.score_samples(floats), detector.score_samples(images), rtol=1e-9
    )


def test_the_odin_gradient_and_the_msp_member_score_are_settings(ensemble, images):
    paper = leaveout(ensemble, 1.0, 0.002).score_samples(images)
    odin_step = leaveout(ensemble, 1.0, 0.002, gradient="odin").score_samples(images)
    msp_only = leaveout(ensemble, 1.0, 0.0, member_score="msp").score_samples(images)
    assert not np.allclose(paper, odin_step)
    assert (msp_only <= ensemble.k).all() and (msp_only > 0).all()
    with pytest.raises(ConfigError, match="gradient"):
        leaveout(ensemble, 1.0, 0.002, gradient="sideways").score_samples(images)
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        leaveout(ensemble, 0.0, 0.002).score_samples(images)


def test_bf16_scores_follow_the_float32_ones(ensemble, images):
    """amp="bf16" runs the networks in bfloat16 (about 3 significant digits), the scores stay
    float64: close to float32's, not equal to them."""
    exact = leaveout(ensemble, 1.0, 0.002).score_samples(images)
    fast_detector = leaveout(ensemble, 1.0, 0.002, amp="bf16")
    fast = fast_detector.score_samples(images)
    assert fast.dtype == np.float64 and not np.array_equal(fast, exact)
    np.testing.assert_allclose(fast, exact, atol=0.05 * ensemble.k)
    assert np.corrcoef(fast, exact)[0, 1] > 0.99
    assert fast_detector.cache_key() == leaveout(ensemble, 1.0, 0.002).cache_key() + "-bf16"
    assert all(p.dtype == torch.float32 for p in ensemble.members[0].parameters())


def test_unknown_amp_is_refused(ensemble, images):
    with pytest.raises(ConfigError, match="amp must be one of none, bf16"):
        leaveout(ensemble, 1.0, 0.0, amp="fp16").score_samples(images)
