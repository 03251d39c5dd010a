import csv
import json
import shutil

import numpy as np
import pytest

from leaveout import ConfigError, CorruptFileError, DatasetNotFoundError
from leaveout.cli import main
from leaveout.evaluation import evaluate, report_split
from leaveout.scoring import LeaveOutEnsemble

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
    out = run_dir / "eval"
    for name in (
        "results.json",
        "results.csv",
        "results.md",
        "roc.png",
        "hist_unseen.png",
        "hist_uniform.png",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert (run_dir / "calibration.json").is_file()  # calibrated on left-out classes first
    assert result["id_accuracy"] > 80  # chance is 12.5%
    for row in result["rows"]:
        for key in ("FPR95", "DetErr", "AUROC", "AUPR-In", "AUPR-Out"):
            assert 0 <= row[key] <= 100
    assert json.loads((out / "results.json").read_text())["rows"][0]["ood"] == "unseen"
    with open(out / "results.csv") as f:
        assert [r["ood"] for r in csv.DictReader(f)] == ["unseen", "uniform"]
    assert "| ood |" in (out / "results.md").read_text()
    assert result["rows"][1]["n_ood"] == 9000  # ODIN's reporting part of 10,000 noise images


def test_scores_are_cached(evaluated, monkeypatch):
    run_dir, first = evaluated
    monkeypatch.setattr(
        LeaveOutEnsemble, "member_scores_grid", lambda *a, **k: pytest.fail("rescored")
    )
    again = evaluate(run_dir, ["unseen", "uniform"], progress=False, plots=False)
    assert again["rows"] == first["rows"]


def test_report_split_rule():
    assert len(report_split(10_000).parts["tune"]) == 1000
    assert len(report_split(500).parts["tune"]) == 100


def test_score_command_writes_csv_with_threshold(evaluated, tmp_path, capsys):
    run_dir, _ = evaluated
    images = np.zeros((3, 16, 16, 3), np.uint8)
    images[:, 4:12, 6:10] = 255
    write_image_files(tmp_path / "imgs", images)
    out = tmp_path / "scores.csv"
    assert main(["score", str(run_dir), str(tmp_path / "imgs"), "--out", str(out), "--quiet"]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and {"path", "score", "is_ood", "predicted"} <= set(rows[0])
    threshold = json.loads((run_dir / "calibration.json").read_text())["threshold"]
    assert all(int(r["is_ood"]) == (float(r["score"]) < threshold) for r in rows)


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
    with pytest.raises(ConfigError, match=r"best\.safetensors does not fit"):
        LeaveOutEnsemble.load(other)


def test_images_with_wrong_channel_count_are_refused(evaluated):
    run_dir, _ = evaluated
    from leaveout import ShapeError

    ensemble = LeaveOutEnsemble.load(run_dir)
    with pytest.raises(ShapeError, match="RGB"):
        ensemble.score(np.zeros((2, 16, 16, 4), np.uint8))


def test_missing_member_weights_say_which(evaluated, tmp_path):
    run_dir, _ = evaluated
    partial = tmp_path / "partial"
    shutil.copytree(run_dir, partial)
    (partial / "members" / "3" / "best.safetensors").unlink()
    with pytest.raises(DatasetNotFoundError, match="member 3"):
        LeaveOutEnsemble.load(partial)


def test_evaluate_cli_prints_the_table(evaluated, capsys):
    run_dir, _ = evaluated
    assert main(["evaluate", str(run_dir), "--ood", "gaussian", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| gaussian |" in out and "ID positive" in out


@pytest.mark.parametrize("method", ["msp", "odin", "energy", "mahalanobis"])
def test_every_baseline_evaluates_the_ensemble_members(evaluated, method):
    run_dir, _ = evaluated
    result = evaluate(run_dir, ["unseen"], method_name=method, progress=False, plots=False)
    assert result["method"] == method
    assert (run_dir / "eval" / method / "results.md").is_file()
    row = result["rows"][0]
    assert all(0 <= row[k] <= 100 for k in ("FPR95", "DetErr", "AUROC", "AUPR-In", "AUPR-Out"))
    assert row["AUROC"] > 50  # held-out digits score lower than the trained ones


def test_standard_run_takes_baselines_but_not_the_leaveout_score(tmp_path):
    from leaveout import training
    from leaveout.config import resolve

    run_dir = tmp_path / "std"
    cfg = resolve("digits", overrides=['train.mode="standard"', "train.epochs=2"])
    training.train(cfg, run_dir, device="cpu", progress=False)
    result = evaluate(run_dir, ["unseen"], method_name="energy", progress=False, plots=False)
    assert result["id_accuracy"] > 50
    with pytest.raises(ConfigError, match="standard run"):
        evaluate(run_dir, ["unseen"], progress=False)


def test_retrained_weights_do_not_reuse_cached_scores(evaluated, tmp_path):
    run_dir, _ = evaluated
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    first = LeaveOutEnsemble.load(copy).weights_id
    from safetensors.torch import save_file

    from leaveout.training import read_safetensors

    path = copy / "members" / "0" / "best.safetensors"
    tensors, meta = read_safetensors(path)
    tensors["classifier.bias"] = tensors["classifier.bias"] + 0.5  # "retrained" weights
    save_file(tensors, path, metadata=meta)
    second = LeaveOutEnsemble.load(copy).weights_id
    assert second != first
    assert (copy / "eval" / "cache" / first).is_dir()
    evaluate(copy, ["unseen"], progress=False, plots=False)
    assert (copy / "eval" / "cache" / second).is_dir()
