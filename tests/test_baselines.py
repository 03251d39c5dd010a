import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax

from leaveout.baselines import (
    energy,
    fit_gaussian,
    fit_member_gaussians,
    logit_scores,
    mahalanobis_scores,
    msp,
    odin_scores,
)
from leaveout.scoring import LeaveOutEnsemble
from leaveout.training import load_splits

from .helpers import float64_copies, normalised_float64


@pytest.fixture(scope="module")
def setup(digits_run):
    cfg, run_dir, _ = digits_run
    parts = load_splits(cfg, None)
    return LeaveOutEnsemble.load(run_dir), parts


def test_msp_and_energy_against_float64():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 5, (6, 4))
    for t in (1.0, 10.0, 1000.0):
        np.testing.assert_allclose(
            msp(torch.tensor(z), t).numpy(), softmax(z / t, axis=1).max(1), rtol=1e-12
        )
        np.testing.assert_allclose(
            energy(torch.tensor(z), t).numpy(), t * logsumexp(z / t, axis=1), rtol=1e-12
        )


def test_logit_scores_sum_over_members(setup):
    ensemble, parts = setup
    images = parts["test"].images[:20]
    x, _ = normalised_float64(ensemble, images)
    expected = sum(
        softmax(net(x).detach().numpy() / 2.0, axis=1).max(1) for net in float64_copies(ensemble)
    )
    np.testing.assert_allclose(logit_scores(ensemble, images, "msp", 2.0), expected, rtol=1e-5)


@pytest.mark.parametrize(("t", "eps"), [(1000.0, 0.0014), (1.0, 0.002), (10.0, 0.0)])
def test_odin_against_an_independent_float64_computation(setup, t, eps):
    ensemble, parts = setup
    images = parts["test"].images[:25]
    x, std = normalised_float64(ensemble, images)
    expected = np.zeros(len(images))
    for net in float64_copies(ensemble):
        xi = x.clone().requires_grad_(True)
        logits = net(xi) / t
        loss = torch.nn.functional.cross_entropy(logits, logits.argmax(1), reduction="sum")
        loss.backward()
        stepped = (x - eps * torch.sign(xi.grad) / std).detach()
        expected += softmax(net(stepped).detach().numpy() / t, axis=1).max(1)
    np.testing.assert_allclose(
        odin_scores(ensemble, images, t, eps), expected, rtol=1e-4, atol=1e-5
    )


def test_gaussian_fit_against_numpy_and_streaming_invariance(setup):
    ensemble, parts = setup
    member, m = ensemble.members[0], 0
    labels = ensemble.partition.to_member_labels(m, parts["train"].labels)
    keep = np.flatnonzero(labels >= 0)[:300]
    images, y = parts["train"].images[keep], labels[keep]
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
    np.testing.assert_allclose(fit.means.numpy(), means, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        fit.precision.numpy(), np.linalg.pinv(cov, hermitian=True), rtol=1e-4, atol=1e-6
    )

    test = feats[:5]
    dist = fit.distances(torch.tensor(test)).numpy()
    assert dist.shape == (5, num)
    precision = np.linalg.pinv(cov, hermitian=True)
    expected = np.array([[(f - mu) @ precision @ (f - mu) for mu in means] for f in test])
    np.testing.assert_allclose(dist, expected, rtol=1e-5, atol=1e-6)


def test_mahalanobis_scores_and_input_step(setup):
    ensemble, parts = setup
    fits = fit_member_gaussians(ensemble, parts["train"], max_per_class=60)
    images = parts["test"].images[:30]
    plain = mahalanobis_scores(ensemble, fits, images, epsilon=0.0)
    assert plain.shape == (30,) and (plain <= 0).all()
    stepped = mahalanobis_scores(ensemble, fits, images, epsilon=0.002)
    assert stepped.mean() > plain.mean()  # the step moves inputs closer to their nearest class
    noise = np.random.default_rng(0).integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    assert mahalanobis_scores(ensemble, fits, noise).mean() < plain.mean()
