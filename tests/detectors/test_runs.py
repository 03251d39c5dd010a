import shutil

import numpy as np
import pytest

from leaveout import LeaveoutWarning, load_detector
from leaveout.detectors import calibrate, run_sets, transfer_calibration
from leaveout.rundir import RunDir


@pytest.fixture
def run(digits_run, tmp_path):
    _, run_dir, _ = digits_run
    shutil.copytree(run_dir, tmp_path / "run")
    return RunDir(tmp_path / "run")


SPACE = {"temperature": (1.0, 10.0), "epsilon": (0.0, 0.002)}


def test_a_saved_calibration_is_loaded_with_the_detector(run):
    sets = run_sets(run)
    detector = load_detector(run, "leaveout", search_space=SPACE)
    assert not hasattr(detector, "threshold_")  # nothing saved yet: the settings as given
    path = calibrate(run, detector, sets, max_images=100)
    assert path == run.calibration_path("leaveout") and path.is_file()
    again = load_detector(run, "leaveout")
    assert again.hyperparameters() == detector.hyperparameters()
    assert again.threshold_ == detector.threshold_
    x = sets["test"].images[:30]
    np.testing.assert_array_equal(again.predict(x), detector.predict(x))


def test_an_override_drops_the_calibrated_threshold(run):
    sets = run_sets(run)
    calibrate(run, load_detector(run, "leaveout", search_space=SPACE), sets, max_images=100)
    calibrated = load_detector(run, "leaveout")
    same = load_detector(run, "leaveout", temperature=calibrated.temperature_)
    assert same.threshold_ == calibrated.threshold_
    other = load_detector(run, "leaveout", temperature=5000.0)
    assert other.hyperparameters()["temperature"] == 5000.0 and other.threshold_ is None
    assert other.hyperparameters()["epsilon"] == calibrated.epsilon_  # the rest stays calibrated


def test_a_calibration_of_other_weights_is_ignored_with_a_warning(run):
    import json

    sets = run_sets(run)
    calibrate(
        run, load_detector(run, "energy", search_space={"temperature": (1.0,)}), sets, max_images=50
    )
    path = run.calibration_path("energy")
    record = json.loads(path.read_text()) | {"weights": "000000000000"}
    path.write_text(json.dumps(record))
    with pytest.warns(LeaveoutWarning, match="other weights"):
        detector = load_detector(run, "energy")
    assert not hasattr(detector, "threshold_")


def test_settings_transfer_to_another_run_with_its_own_threshold(run, tmp_path):
    sets = run_sets(run)
    source = load_detector(run, "msp", search_space={"temperature": (1.0, 1000.0)})
    calibrate(run, source, sets, max_images=100)
    shutil.copytree(run.path, tmp_path / "other")
    other = RunDir(tmp_path / "other")
    weights = other.weights_path(0)
    weights.write_bytes(weights.read_bytes())  # same content: the transfer must still rescore
    transfer_calibration(source, other, "cpu", None)
    loaded = load_detector(other, "msp")
    assert loaded.temperature_ == source.temperature_
    assert "another run" in loaded.validation_
    expected = load_detector(other, "msp", temperature=source.temperature_)
    expected.fit(sets["val"])
    assert loaded.threshold_ == expected.threshold_


def test_a_different_tpr_or_criterion_drops_the_saved_threshold(run):
    sets = run_sets(run)
    calibrate(
        run, load_detector(run, "energy", search_space={"temperature": (1.0,)}), sets, max_images=50
    )
    assert load_detector(run, "energy").threshold_ is not None
    assert load_detector(run, "energy", tpr=0.95).threshold_ is not None  # the saved fraction
    changed = load_detector(run, "energy", tpr=0.5)
    assert changed.tpr == 0.5 and changed.threshold_ is None


def test_a_damaged_calibration_record_is_named(run):
    from leaveout import CorruptFileError

    run.calibration_path("msp").parent.mkdir(exist_ok=True)
    run.calibration_path("msp").write_text("[1, 2]")
    with pytest.raises(CorruptFileError, match=r"msp\.json: expected a JSON object"):
        load_detector(run, "msp")


def test_cached_statistics_are_kept_apart_by_precision(run):
    train = run_sets(run)["train"]
    float32 = load_detector(run, "mahalanobis")
    bf16 = load_detector(run, "mahalanobis", amp="bf16")  # not the float32 fit from the cache
    fresh = load_detector(run, "mahalanobis", amp="bf16").fit_statistics(train)
    for a, b, c in zip(bf16.fits_, fresh.fits_, float32.fits_):
        assert np.array_equal(a.means.numpy(), b.means.numpy())
        assert not np.array_equal(a.means.numpy(), c.means.numpy())
