import numpy as np
import pytest
import torch
from PIL import Image

from leaveout import (
    ConfigError,
    LeaveOutEnsemble,
    LeaveOutPartition,
    RunNotFoundError,
    ShapeError,
)
from leaveout.rundir import RunDir

from .helpers import float64_copies, normalised_float64


@pytest.fixture(scope="session")
def ensemble(digits_ensemble):
    return digits_ensemble


@pytest.fixture(scope="session")
def images(digits_sets):
    test = digits_sets["test"]
    return test.images[:40], test.labels[:40]


def test_predict_proba_zero_pads_each_member_at_its_left_out_classes(ensemble, images):
    x, labels = images
    xs, _ = normalised_float64(ensemble, x)
    expected = np.zeros((len(x), ensemble.num_classes))
    for m, net in enumerate(float64_copies(ensemble)):
        probs = torch.softmax(net(xs), 1).detach().numpy()
        kept = [c for c in range(ensemble.num_classes) if c not in ensemble.partition.left_out(m)]
        expected[:, kept] += probs  # member m adds nothing at its left-out classes
    expected /= ensemble.k
    proba = ensemble.predict_proba(x)
    np.testing.assert_allclose(proba, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-9)
    assert (ensemble.classify(x) == proba.argmax(1)).all()
    assert (ensemble.classify(x) == labels).mean() > 0.5


def test_test_flip_averages_each_member_over_the_mirror_image(ensemble, images):
    x, _ = images
    mirrored = np.ascontiguousarray(x[:, :, ::-1])  # (N, H, W, 3): flip the width
    expected = (ensemble.predict_proba(x) + ensemble.predict_proba(mirrored)) / 2
    ensemble.test_flip = True
    try:
        np.testing.assert_allclose(ensemble.predict_proba(x), expected, rtol=1e-6, atol=1e-9)
    finally:
        ensemble.test_flip = False


def test_test_shift_adds_shifted_copies_with_reflected_borders_at_half_the_weight(ensemble, images):
    x, _ = images
    h, w = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    up_left, down_right = padded[:, :h, :w], padded[:, 2:, 2:]
    views = [x, x[:, :, ::-1], up_left, up_left[:, :, ::-1], down_right, down_right[:, :, ::-1]]
    probs = [ensemble.predict_proba(np.ascontiguousarray(v)) for v in views]
    expected = 0.25 * (probs[0] + probs[1]) + 0.125 * sum(probs[2:])
    ensemble.test_flip, ensemble.test_shift = True, 1
    try:
        np.testing.assert_allclose(ensemble.predict_proba(x), expected, rtol=1e-6, atol=1e-9)
        assert sum(weight for weight, _ in ensemble.test_views(torch.zeros(1, 3, h, w))) == 1
        ensemble.test_shift = h
        with pytest.raises(ShapeError, match=f"data.test_shift = {h} needs images larger"):
            ensemble.test_views(torch.zeros(1, 3, h, w))
    finally:
        ensemble.test_flip, ensemble.test_shift = False, 0


def test_every_class_gets_k_minus_1_votes(ensemble):
    votes = np.zeros(ensemble.num_classes, dtype=int)
    for m in range(ensemble.k):
        votes[list(ensemble.kept_classes(m))] += 1
    assert (votes == ensemble.k - 1).all()


def test_inputs_of_every_kind_give_the_same_probabilities(ensemble, images):
    x, _ = images
    expected = ensemble.predict_proba(x)
    floats = ensemble.normalization(torch.from_numpy(x))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x), torch.zeros(len(x))), batch_size=7
    )
    pil = [Image.fromarray(image) for image in x]
    for other in (
        torch.from_numpy(x),
        floats,
        floats.numpy(),
        loader,
        pil,
        (b for b in [x[:20], x[20:]]),
    ):
        np.testing.assert_allclose(ensemble.predict_proba(other), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ensemble.predict_proba(x[0]), expected[:1], rtol=1e-5, atol=1e-7)


def test_wrong_inputs_are_clear_errors(ensemble):
    with pytest.raises(ShapeError, match=r"\(N, H, W, 3\)"):
        ensemble.classify(np.zeros((2, 16, 16, 1), np.uint8))
    with pytest.raises(ShapeError, match="trained on 16x16"):
        ensemble.classify(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ShapeError, match="trained on 16x16"):
        ensemble.classify(torch.zeros((2, 3, 32, 32)))  # floats are checked too
    with pytest.raises(ShapeError, match="NaN"):
        ensemble.classify(torch.full((2, 3, 16, 16), float("nan")))
    with pytest.raises(ShapeError, match=r"normalised \(N, 3, H, W\)"):
        ensemble.classify(np.zeros((2, 16, 16, 3), np.float32))  # float NHWC: say what to pass
    with pytest.raises(ShapeError, match="uint8"):
        ensemble.classify(np.zeros((2, 16, 16, 3), np.int64))
    with pytest.raises(ShapeError, match="path"):
        ensemble.classify("photo.jpg")
    with pytest.raises(ConfigError, match="amp must be"):
        ensemble.classify(np.zeros((2, 16, 16, 3), np.uint8), amp="bfloat16")


def test_a_hand_built_ensemble_is_put_in_eval_mode(ensemble, images):
    x, _ = images
    member = type(ensemble.members[0])(ensemble.members[0].classifier.out_features)
    member.load_state_dict(ensemble.members[0].state_dict())
    member.train()
    single = LeaveOutEnsemble(
        [member], ensemble.classes[:6], ensemble.normalization, image_size=(16, 16)
    )
    assert not single.members[0].training
    before = {k: v.clone() for k, v in member.state_dict().items()}
    single.predict_proba(x)
    after = member.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics unchanged


def test_a_partition_that_does_not_fit_is_refused(ensemble):
    with pytest.raises(ShapeError, match="groups"):
        LeaveOutEnsemble(ensemble.members[:2], ensemble.classes, partition=LeaveOutPartition(8, 4))


def test_missing_member_weights_say_which(digits_run, tmp_path):
    import shutil

    _, run_dir, _ = digits_run
    partial = tmp_path / "partial"
    shutil.copytree(run_dir, partial)
    (partial / "members" / "3" / "best.safetensors").unlink()
    with pytest.raises(RunNotFoundError, match="member 3"):
        LeaveOutEnsemble.load(partial)
    with pytest.raises(RunNotFoundError, match="training run"):
        LeaveOutEnsemble.load(tmp_path / "nothing")
    assert RunDir(partial).exists()


def test_bf16_classification_runs_every_member_in_autocast(ensemble, images):
    x, _ = images
    (batch,) = list(ensemble.batches(x, len(x)))
    expected = np.zeros((len(x), ensemble.num_classes))
    for m, member in enumerate(ensemble.networks()):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            logits = member(batch)
        assert logits.dtype == torch.bfloat16
        expected[:, list(ensemble.kept_classes(m))] += torch.softmax(logits.double(), 1).numpy()
    expected /= ensemble.k
    proba = ensemble.predict_proba(x, amp="bf16")
    np.testing.assert_allclose(proba, expected, rtol=1e-9, atol=1e-12)
    assert np.abs(proba - ensemble.predict_proba(x)).max() > 1e-6  # not the float32 result
    assert (ensemble.classify(x, amp="bf16") == proba.argmax(1)).all()


def test_inference_runs_folded_copies_and_leaves_the_members_as_given(ensemble, images):
    x, _ = images
    (batch,) = list(ensemble.batches(x, len(x)))
    networks = ensemble.networks()
    assert ensemble.networks()[0] is networks[0]  # built once
    for member, network in zip(ensemble.members, networks):
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in member.modules())
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in network.modules())
        with torch.no_grad():
            torch.testing.assert_close(network(batch), member(batch), rtol=1e-4, atol=1e-5)
    wrapped = ensemble.networks("bf16")
    assert [w.network for w in wrapped] == networks
