import json

import numpy as np
import pytest

from leaveout import ConfigError
from leaveout.calibration import (
    PAPER_EPSILONS,
    PAPER_TEMPERATURES,
    calibrate_left_out,
    calibrate_on_pair,
    save_calibration,
    threshold_keeping,
)
from leaveout.data import noise_images
from leaveout.metrics import fpr_at_tpr
from leaveout.scoring import LeaveOutEnsemble
from leaveout.training import load_splits


@pytest.fixture(scope="module")
def setup(digits_run):
    cfg, run_dir, _ = digits_run
    parts = load_splits(cfg, None)
    return LeaveOutEnsemble.load(run_dir), parts, run_dir


def test_paper_grid():
    assert PAPER_TEMPERATURES == (1, 10, 100, 1000, 5000)
    assert PAPER_EPSILONS == (0, 0.000313, 0.000625, 0.00125, 0.002, 0.003)


def test_threshold_keeps_95_percent():
    scores = np.arange(100.0)
    t = threshold_keeping(scores)
    assert t == 5.0 and (scores >= t).mean() == 0.95
    assert (np.arange(7.0) >= threshold_keeping(np.arange(7.0))).mean() >= 0.95


def test_left_out_calibration_picks_the_grid_point_with_the_lowest_mean_member_fpr(setup):
    ensemble, parts, _ = setup
    temps, epss = (1.0, 1000.0), (0.0, 0.002)
    cal, rows = calibrate_left_out(ensemble, parts["val"], temps, epss, max_images=200)
    assert len(rows) == 4
    best = min(rows, key=lambda r: (r["FPR95"], -r["AUROC"]))
    assert (cal.temperature, cal.epsilon) == (best["T"], best["eps"])
    # recompute one grid point independently: member 0 alone, its kept vs left-out classes
    labels = parts["val"].labels
    fprs = []
    for m in range(ensemble.k):
        single = LeaveOutEnsemble(
            [ensemble.members[m]],
            ensemble.classes,
            ensemble.normalization,
            image_size=ensemble.image_size,
        )
        out = np.isin(labels, ensemble.partition.left_out(m))
        ids = np.flatnonzero(~out)[:200]
        oods = np.flatnonzero(out)[:200]
        fprs.append(
            fpr_at_tpr(
                single.score(parts["val"].images[ids], 1000.0, 0.002),
                single.score(parts["val"].images[oods], 1000.0, 0.002),
            )
        )
    row = next(r for r in rows if (r["T"], r["eps"]) == (1000.0, 0.002))
    assert row["FPR95"] == pytest.approx(100 * np.mean(fprs))
    id_scores = ensemble.score(parts["val"], cal.temperature, cal.epsilon)
    assert (id_scores >= cal.threshold).mean() >= 0.95


def test_calibration_on_a_named_pair_and_saving(setup, tmp_path):
    ensemble, parts, _ = setup
    noise = noise_images("uniform", n=100, size=16)
    cal, rows = calibrate_on_pair(
        ensemble, parts["test"].images[:100], noise, (1.0, 100.0), (0.0, 0.001)
    )
    assert len(rows) == 4 and cal.threshold is not None
    path = save_calibration(tmp_path, cal, rows, "test", "fpr95")
    saved = json.loads(path.read_text())
    assert saved["temperature"] == cal.temperature and len(saved["grid"]) == 4


def test_bad_criterion(setup):
    ensemble, parts, _ = setup
    with pytest.raises(ConfigError, match="criterion"):
        calibrate_left_out(ensemble, parts["val"], criterion="accuracy")


def test_calibrate_command_left_out_and_named_set(setup, tmp_path, capsys):
    import shutil

    from leaveout.cli import main

    _, _, run_dir = setup
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    assert main(["calibrate", str(copy), "--quiet"]) == 0
    saved = json.loads((copy / "calibration.json").read_text())
    assert saved["source"].startswith("left-out") and len(saved["grid"]) == 30
    assert saved["temperature"] in PAPER_TEMPERATURES and saved["epsilon"] in PAPER_EPSILONS
    assert (
        main(["calibrate", str(copy), "--ood", "gaussian", "--criterion", "auroc", "--quiet"]) == 0
    )
    saved = json.loads((copy / "calibration.json").read_text())
    assert "gaussian" in saved["source"] and saved["criterion"] == "auroc"
    assert "chosen on" in capsys.readouterr().out


def test_baseline_calibration_on_left_out_pairs(setup):
    from leaveout.calibration import calibrate_baseline_left_out

    ensemble, parts, _ = setup
    settings, rows = calibrate_baseline_left_out("odin", ensemble, parts["val"], max_images=100)
    assert set(settings) == {"temperature", "epsilon"} and len(rows) == 30
    best = min(rows, key=lambda r: (r["FPR95"], -r["AUROC"]))
    assert settings == {"temperature": best["temperature"], "epsilon": best["epsilon"]}
    settings, rows = calibrate_baseline_left_out("energy", ensemble, parts["val"], max_images=100)
    assert set(settings) == {"temperature"} and len(rows) == 5


def test_left_out_calibration_of_the_msp_member_score(setup):
    ensemble, parts, _ = setup
    cal, rows = calibrate_left_out(
        ensemble, parts["val"], (1.0, 10.0), (0.0,), max_images=100, score_kind="msp"
    )
    assert cal.epsilon == 0.0 and len(rows) == 2


def test_calibrate_command_for_a_baseline_writes_both_runs(setup, tmp_path):
    import shutil

    from leaveout.cli import main

    _, _, run_dir = setup
    copy, other = tmp_path / "run", tmp_path / "other"
    shutil.copytree(run_dir, copy)
    other.mkdir()
    assert main(["calibrate", str(copy), "--method", "msp", "--also", str(other), "--quiet"]) == 0
    for folder in (copy, other):
        saved = json.loads((folder / "calibration-msp.json").read_text())
        assert saved["temperature"] in PAPER_TEMPERATURES and "left-out" in saved["source"]
