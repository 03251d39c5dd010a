"""The integration against the real pytorch-ood 0.4 (installed with --no-deps by ./dev)."""

import importlib.util
import sys

import numpy as np
import pytest
import torch

from leaveout import LeaveOutEnsemble, aupr_in, aupr_out, auroc, create_detector, fpr_at_tpr
from leaveout.data import load_run_sets, noise_images

from . import torchvision_stub

if importlib.util.find_spec("pytorch_ood") is None:  # pragma: no cover
    pytest.skip("pytorch-ood is not installed (./dev installs it)", allow_module_level=True)
if "torchvision" not in sys.modules:
    torchvision_stub.install()

import pytorch_ood.api
from pytorch_ood.detector import (
    ASH,
    GEN,
    KNN,
    ODIN,
    EnergyBased,
    Mahalanobis,
    MaxSoftmax,
    ReAct,
    ViM,
)
from pytorch_ood.metrics import OODMetrics

from leaveout.integrations.pytorch_ood import PytorchOODDetector


@pytest.fixture(scope="module")
def setup(digits_run):
    cfg, run_dir, _ = digits_run
    ensemble = LeaveOutEnsemble.load(run_dir)
    sets = load_run_sets(cfg.data, cfg.train.seed)
    single = ensemble.single(0)  # one network, as pytorch-ood's detectors take
    x = ensemble.normalization(torch.from_numpy(sets["test"].images[:60]))
    return ensemble, single, sets, x


def test_it_is_a_real_pytorch_ood_detector(setup):
    ensemble, _, _, x = setup
    wrapped = PytorchOODDetector(
        create_detector("leaveout", ensemble, temperature=10.0, epsilon=0.001)
    )
    assert isinstance(wrapped, pytorch_ood.api.Detector)
    assert wrapped.hyperparameter_space["temperature"] == [1, 10, 100, 1000, 5000]
    assert wrapped.get_hyperparameters() == {"temperature": 10.0, "epsilon": 0.001}
    outlier = wrapped(x)  # __call__ = predict
    assert outlier.device == x.device and outlier.shape == (60,)
    expected = create_detector("leaveout", ensemble, temperature=10.0, epsilon=0.001).score_samples(
        x
    )
    np.testing.assert_allclose(outlier.numpy(), -expected)
    wrapped.set_hyperparameters(temperature=1000.0)
    assert wrapped.get_hyperparameters()["temperature"] == 1000.0
    assert wrapped.to("cpu") is wrapped and wrapped.device.type == "cpu"
    assert wrapped.fit(None) is wrapped  # nothing to fit for the leave-out score


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (("msp", {"temperature": 2.0}), lambda m, std: MaxSoftmax(m, t=2.0)),
        (("energy", {"temperature": 3.0}), lambda m, std: EnergyBased(m, t=3.0)),
        (
            ("odin", {"temperature": 1000.0, "epsilon": 0.0014}),
            lambda m, std: ODIN(m, eps=0.0014, temperature=1000.0, norm_std=std),
        ),
        (
            ("odin", {"temperature": 1.0, "epsilon": 0.002}),
            lambda m, std: ODIN(m, eps=0.002, temperature=1.0, norm_std=std),
        ),
    ],
)
def test_scores_equal_pytorch_oods_detectors_on_the_same_network(setup, ours, theirs):
    _, single, _, x = setup
    name, params = ours
    wrapped = PytorchOODDetector(create_detector(name, single, **params))
    reference = theirs(single.networks()[0], list(single.normalization.std))
    np.testing.assert_allclose(
        wrapped.predict(x).numpy(), reference.predict(x).double().numpy(), rtol=1e-5, atol=1e-6
    )
    if params.get("epsilon", 0.0) == 0.0:
        with torch.no_grad():
            logits = single.networks()[0](x)
        np.testing.assert_allclose(
            wrapped.predict_logits(logits).numpy(), wrapped.predict(x).numpy(), rtol=1e-12
        )


def ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values))


def test_mahalanobis_orders_like_pytorch_oods(setup):
    ensemble, single, sets, x = setup
    train = sets["train"]
    member_labels = torch.from_numpy(ensemble.partition.to_member_labels(0, train.labels))
    keep = member_labels >= 0
    with torch.no_grad():
        features = single.networks()[0].forward_features(next(single.batches(train.images, 10_000)))
    theirs = Mahalanobis(single.networks()[0].forward_features).fit_features(
        features[keep], member_labels[keep]
    )
    ours = PytorchOODDetector(create_detector("mahalanobis", single))  # a 6-class network
    ours.fit_features(features[keep], member_labels[keep])
    with torch.no_grad():
        test_features = single.networks()[0].forward_features(x)
    a = ours.predict_features(test_features).numpy()
    b = theirs.predict_features(test_features).double().numpy()
    # pytorch-ood does not divide the covariance by N and adds a ridge: same order, other scale
    assert np.corrcoef(ranks(a), ranks(b))[0, 1] > 0.999
    np.testing.assert_allclose(ours.predict(x).numpy(), a, rtol=1e-9)


@pytest.fixture(scope="module")
def member_features(setup):
    """Member 0's training features of its kept classes with its labels, and test features."""
    ensemble, single, sets, x = setup
    train = sets["train"]
    member_labels = torch.from_numpy(ensemble.partition.to_member_labels(0, train.labels))
    keep = member_labels >= 0
    network = single.networks()[0]
    with torch.no_grad():
        features = network.forward_features(next(single.batches(train.images, 10_000)))
        test_features = network.forward_features(x)
    return network, features[keep], member_labels[keep], test_features


def fitted_ours(single, name, features, labels, **params):
    return PytorchOODDetector(create_detector(name, single, **params)).fit_features(
        features, labels
    )


def test_knn_equals_pytorch_oods(setup, member_features):
    _, single, _, x = setup
    network, features, labels, test_features = member_features
    theirs = KNN(network.forward_features, k=10).fit_features(features, labels)
    ours = fitted_ours(single, "knn", features, labels, k=10)
    expected = theirs.predict_features(test_features).double().numpy()
    np.testing.assert_allclose(ours.predict_features(test_features).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(ours.predict(x).numpy(), expected, rtol=1e-5)


def test_vim_equals_pytorch_oods(setup, member_features):
    _, single, _, _ = setup
    network, features, labels, test_features = member_features
    layer = network.classifier
    dimension = features.shape[1] // 2
    theirs = ViM(network.forward_features, d=dimension, w=layer.weight, b=layer.bias)
    theirs.fit_features(features, labels)
    ours = fitted_ours(single, "vim", features, labels, principal_fraction=0.5)
    got = ours.predict_features(test_features).numpy()
    expected = theirs.predict_features(test_features).double().numpy()
    # theirs runs in float32, eigenvectors included: scores of order 1 come out up to 5e-3
    # apart, depending on the thread count; the order of the scores agrees
    np.testing.assert_allclose(got, expected, atol=1e-2)
    ranks = [np.argsort(np.argsort(v)) for v in (got, expected)]
    assert np.corrcoef(*ranks)[0, 1] > 0.999


def test_react_equals_pytorch_oods(setup, member_features):
    _, single, _, _ = setup
    network, features, labels, test_features = member_features
    theirs = ReAct(network.forward_features, network.classifier, percentile=0.9)
    theirs.fit_feature_maps(features, labels)
    ours = fitted_ours(single, "react", features, labels, percentile=90)
    threshold = ours.detector.state_dict()["thresholds.0"][9000].item()
    assert threshold == pytest.approx(theirs.threshold, rel=1e-6)
    np.testing.assert_allclose(
        ours.predict_features(test_features).numpy(),
        theirs.predict_feature_maps(test_features).double().numpy(),
        rtol=1e-5,
    )


@pytest.mark.parametrize("variant", ["s", "b", "p"])
def test_ash_equals_pytorch_oods(setup, member_features, variant):
    _, single, _, _ = setup
    network, _, _, test_features = member_features
    # pytorch-ood shapes 4-d feature maps: pooled features as (B, D, 1, 1)
    theirs = ASH(
        lambda x: network.forward_features(x)[:, :, None, None],
        lambda maps: network.classifier(maps.flatten(1)),
        variant=f"ash-{variant}",
        percentile=0.65,
    )
    ours = PytorchOODDetector(create_detector("ash", single, percentile=65, variant=variant))
    np.testing.assert_allclose(
        ours.predict_features(test_features).numpy(),
        theirs.predict_feature_maps(test_features[:, :, None, None]).double().numpy(),
        rtol=1e-5,
    )


def test_gen_equals_pytorch_oods_up_to_its_mean(setup):
    _, single, _, x = setup
    with torch.no_grad():
        logits = single.networks()[0](x)
    ours = PytorchOODDetector(create_detector("gen", single, gamma=0.1, top_classes=100))
    theirs = GEN(None, gamma=0.1, M=None).predict_logits(logits).double().numpy()
    # pytorch-ood averages over the top M instead of summing, and clamps the probabilities to
    # [1e-7, 1 - 1e-7]; ours is -sum: equal up to the factor M where nothing was clamped
    probs = logits.double().softmax(1)
    unclamped = ((probs > 1e-7) & (probs < 1 - 1e-7)).all(1).numpy()
    assert unclamped.mean() > 0.5
    classes = logits.shape[1]
    np.testing.assert_allclose(
        ours.predict_logits(logits).numpy()[unclamped], classes * theirs[unclamped], rtol=1e-5
    )
    assert np.corrcoef(ranks(ours.predict(x).numpy()), ranks(theirs))[0, 1] > 0.99


def test_fit_from_a_loader_for_the_ensemble(setup):
    ensemble, _, sets, _ = setup
    train = sets["train"]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(
            torch.from_numpy(train.images), torch.from_numpy(train.labels)
        ),
        batch_size=128,
    )
    wrapped = PytorchOODDetector(create_detector("mahalanobis", ensemble)).fit(loader)
    reference = create_detector("mahalanobis", ensemble).fit_statistics(train)
    images = sets["test"].images[:20]
    np.testing.assert_allclose(
        wrapped.predict(torch.from_numpy(images)).numpy(),
        -reference.score_samples(images),
        rtol=1e-6,
    )


def test_pytorch_oods_metrics_on_our_scores(setup):
    ensemble, _, sets, _ = setup
    wrapped = PytorchOODDetector(
        create_detector("leaveout", ensemble, temperature=10.0, epsilon=0.0)
    )
    ids = torch.from_numpy(sets["test"].images[:300])
    oods = torch.from_numpy(noise_images("gaussian", n=200, size=16).images)
    metrics = OODMetrics()
    metrics.update(wrapped.predict(ids), torch.zeros(len(ids), dtype=torch.long))
    metrics.update(wrapped.predict(oods), -torch.ones(len(oods), dtype=torch.long))
    theirs = metrics.compute()
    id_scores, ood_scores = -wrapped.predict(ids).numpy(), -wrapped.predict(oods).numpy()
    assert theirs["AUROC"] == pytest.approx(auroc(id_scores, ood_scores), abs=1e-12)
    # pytorch-ood calls OOD positive: its FPR95TPR is our FPR95 with ood_positive=True
    assert theirs["FPR95TPR"] == pytest.approx(
        fpr_at_tpr(id_scores, ood_scores, ood_positive=True), abs=1e-12
    )
    # AUPR: pytorch-ood integrates the PR curve by the trapezoid rule, we use average
    # precision (step-wise, scikit-learn's); both agree closely but are different numbers
    assert theirs["AUPR-IN"] == pytest.approx(aupr_in(id_scores, ood_scores), abs=0.02)
    assert theirs["AUPR-OUT"] == pytest.approx(aupr_out(id_scores, ood_scores), abs=0.02)
