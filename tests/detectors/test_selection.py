import shutil

import pytest

from leaveout import ConfigError
from leaveout.detectors import (
    AUTO,
    carry_selection,
    chosen_method,
    list_detectors,
    select_detector,
)
from leaveout.rundir import RunDir


@pytest.fixture(scope="module")
def selected(digits_run, ensemble, sets, tmp_path_factory):
    _, run_dir, _ = digits_run
    copy = tmp_path_factory.mktemp("selection") / "run"
    shutil.copytree(run_dir, copy)
    run = RunDir(copy)
    # only the training and validation images: nothing of the test split or of an OOD set
    record = select_detector(
        run, ensemble, {"train": sets["train"], "val": sets["val"]}, max_images=150
    )
    return run, record


def test_every_detector_is_a_candidate_and_the_best_by_fpr95_is_chosen(selected):
    run, record = selected
    rows = record["candidates"]
    assert [row["detector"] for row in rows] == list_detectors()
    fitted = [row for row in rows if "error" not in row]
    assert len(fitted) >= 10
    best = min(fitted, key=lambda row: (row["FPR95"], -row["AUROC"]))  # the rule, written again
    assert record["chosen"] == best["detector"] and record["criterion"] == "fpr95"
    for row in fitted:  # each detector's own calibration is saved for these weights
        saved = run.current_calibration(row["detector"])
        assert saved is not None and saved["params"] == row["settings"]


def test_auto_resolves_to_the_choice_for_these_weights_only(selected, tmp_path):
    run, record = selected
    assert chosen_method(run, AUTO) == record["chosen"]
    assert chosen_method(run, "energy") == "energy"
    stale = dict(run.read_calibration(AUTO), weights="other-weights")
    other = RunDir(tmp_path / "other")
    shutil.copytree(run.path, other.path)
    other.write_calibration(AUTO, stale)
    with pytest.raises(ConfigError, match="--select auto"):
        chosen_method(other, AUTO)


def test_a_standard_run_has_nothing_to_select_on(ensemble, sets, tmp_path):
    with pytest.raises(ConfigError, match="standard run"):
        select_detector(RunDir(tmp_path), ensemble.single(0), sets)


def test_the_choice_and_its_settings_carry_to_another_run(selected, tmp_path):
    run, record = selected
    target = RunDir(tmp_path / "target")
    shutil.copytree(run.path, target.path)
    for name in (AUTO, record["chosen"]):
        target.calibration_path(name).unlink()
    written = carry_selection(run, target)
    assert sorted(path.name for path in written) == sorted(
        [f"{record['chosen']}.json", f"{AUTO}.json"]
    )
    assert chosen_method(target, AUTO) == record["chosen"]
    there = target.current_calibration(record["chosen"])
    assert (
        there is not None and there["params"] == run.current_calibration(record["chosen"])["params"]
    )
    assert "seconds" in record["candidates"][0]
