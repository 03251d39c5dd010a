import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from leaveout import ConfigError, CorruptFileError, LeaveoutWarning, ShapeError
from leaveout.data import report_split
from leaveout.detectors.base import Detector
from leaveout.ensemble import LeaveOutEnsemble
from leaveout.evaluation import evaluate
from leaveout.rundir import RunDir

from .helpers import write_image_files


@pytest.fixture(scope="module")
def evaluated(digits_run, tmp_path_factory):
    _, run_dir, _ = digits_run
    copy = tmp_path_factory.mktemp("eval") / "run"
    shutil.copytree(run_dir, copy)
    result = evaluate(copy, ["unseen", "uniform"], progress=False)
    return copy, result


def test_evaluate_writes_every_file_with_sane_metrics(evaluated):
    run_dir, result = evaluated
    out = run_dir / "eval" / "leaveout"
    for name in (
        "results.json",
        "results.csv",
        "results.md",
        "roc.png",
        "hist_unseen.png",
        "hist_uniform.png",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert (
        RunDir(run_dir).calibration_path("leaveout").is_file()
    )  # calibrated on left-out classes first
    assert result["id_accuracy"] > 0.8  # a fraction; chance is 1/8
    for row in result["rows"]:
        assert all(0 <= row[k] <= 1 for k in ("FPR95", "DetErr", "AUROC", "AUPR-In", "AUPR-Out"))
    saved = json.loads((out / "results.json").read_text())
    assert (
        saved["rows"][0]["ood"] == "unseen"
        and saved["rows"][0]["AUROC"] == result["rows"][0]["AUROC"]
    )
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["ood"] for r in rows] == ["unseen", "uniform"]
    assert float(rows[0]["AUROC"]) == pytest.approx(100 * result["rows"][0]["AUROC"])  # percent
    assert "| ood |" in (out / "results.md").read_text()
    assert result["rows"][1]["n_ood"] == 9000  # ODIN's reporting part of 10,000 noise images


def test_scores_are_cached(evaluated, monkeypatch):
    run_dir, first = evaluated
    monkeypatch.setattr(Detector, "score_grid", lambda *a, **k: pytest.fail("rescored"))
    again = evaluate(run_dir, ["unseen", "uniform"], progress=False, plots=False)
    assert again["rows"] == first["rows"]


def test_report_split_rule():
    assert len(report_split(10_000).parts["tune"]) == 1000
    assert len(report_split(500).parts["tune"]) == 100


def test_overridden_settings_write_their_own_folder(evaluated):
    run_dir, first = evaluated
    result = evaluate(
        run_dir, ["uniform"], params={"temperature": 5000.0}, progress=False, plots=False
    )
    assert "temperature5000" in result["folder"] and result["settings"]["temperature"] == 5000.0
    calibrated = json.loads((run_dir / "eval" / "leaveout" / "results.json").read_text())
    assert calibrated["rows"] == first["rows"]  # the calibrated report is untouched


def test_max_images_and_tiny_sets(evaluated, tmp_path):
    run_dir, _ = evaluated
    result = evaluate(
        run_dir, ["uniform"], max_images=200, progress=False, plots=False, out=tmp_path / "o"
    )
    assert (result["rows"][0]["n_id"], result["rows"][0]["n_ood"]) == (200, 200)
    assert (tmp_path / "o" / "results.md").is_file()
    tiny = tmp_path / "tiny"
    write_image_files(
        tiny, np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    )
    with pytest.warns(LeaveoutWarning, match="only 10 OOD images"):
        evaluate(run_dir, [str(tiny)], progress=False, plots=False, out=tmp_path / "t")


def test_truncated_weights_file_is_named(evaluated, tmp_path):
    run_dir, _ = evaluated
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    path = broken / "members" / "2" / "best.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptFileError, match=r"members/2/best\.safetensors"):
        LeaveOutEnsemble.load(broken)


def test_run_directory_of_another_architecture_is_named(evaluated, tmp_path):
    run_dir, _ = evaluated
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    config = (other / "config.toml").read_text().replace('name = "digits_cnn"', 'name = "resnet8"')
    (other / "config.toml").write_text(config)
    with pytest.raises(ShapeError, match=r"best\.safetensors does not fit"):
        LeaveOutEnsemble.load(other)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("msp", {"temperature": 1000.0}),
        ("odin", {"temperature": 1000.0, "epsilon": 0.0014}),
        ("energy", {"temperature": 1.0}),
        ("mahalanobis", {"epsilon": 0.002}),
    ],
)
def test_every_baseline_evaluates_the_ensemble_members(evaluated, method, params):
    run_dir, _ = evaluated
    result = evaluate(
        run_dir, ["unseen"], method=method, params=params, progress=False, plots=False
    )
    assert result["method"] == method and result["settings"] == params
    folder = Path(result["folder"])
    assert folder.parent == run_dir / "eval" and folder.name.startswith(method + "-")
    assert (folder / "results.md").is_file()
    row = result["rows"][0]
    assert all(0 <= row[k] <= 1 for k in ("FPR95", "DetErr", "AUROC", "AUPR-In", "AUPR-Out"))
    assert row["AUROC"] > 0.5  # held-out digits score lower than the trained ones


def test_standard_run_takes_baselines_but_not_the_leaveout_score(tmp_path):
    from leaveout import training
    from leaveout.config import resolve

    run_dir = tmp_path / "std"
    cfg = resolve("digits", overrides=['train.mode="standard"', "train.epochs=2"])
    training.train(cfg, run_dir, device="cpu", progress=False)
    result = evaluate(run_dir, ["unseen"], method="energy", progress=False, plots=False)
    assert result["id_accuracy"] > 0.5 and "not calibrated" in result["chosen_on"]
    with pytest.raises(ConfigError, match="standard run"):
        evaluate(run_dir, ["unseen"], progress=False)


def test_retrained_weights_get_a_fresh_cache_and_calibration(evaluated, tmp_path):
    run_dir, _ = evaluated
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    run = RunDir(copy)
    first = LeaveOutEnsemble.load(copy).weights_id
    tensors = run.read_weights(0)
    tensors["classifier.bias"] = tensors["classifier.bias"] + 0.5  # "retrained" weights
    run.write_weights(0, "best", tensors, {})
    second = LeaveOutEnsemble.load(copy).weights_id
    assert second != first and run.cache_dir(first).is_dir()
    with pytest.warns(LeaveoutWarning, match="other weights"):
        evaluate(copy, ["unseen"], progress=False, plots=False)
    assert run.cache_dir(second).is_dir()
    assert json.loads(run.calibration_path("leaveout").read_text())["weights"] == second


def test_plots_name_sets_not_paths(evaluated, tmp_path):
    run_dir, _ = evaluated
    folder = tmp_path / "oodset"
    write_image_files(
        folder, np.random.default_rng(1).integers(0, 256, (150, 16, 16, 3), dtype=np.uint8)
    )
    result = evaluate(run_dir, [str(folder)], progress=False, out=tmp_path / "r")
    assert result["rows"][0]["ood"] == "oodset" and (tmp_path / "r" / "hist_oodset.png").is_file()
