import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from leaveout import ConfigError, CorruptFileError, LeaveoutWarning, ShapeError
from leaveout.data.splits import tuning_size
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
    monkeypatch.setattr(LeaveOutEnsemble, "classify", lambda *a, **k: pytest.fail("reclassified"))
    again = evaluate(run_dir, ["unseen", "uniform"], progress=False, plots=False)
    assert again["rows"] == first["rows"] and again["id_accuracy"] == first["id_accuracy"]


def test_tuning_size_rule():
    assert tuning_size(10_000) == 1000 and tuning_size(2000) == 1000 and tuning_size(500) == 100


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
        ("knn", {"k": 20}),
        ("vim", {"principal_fraction": 0.5}),
        ("react", {"percentile": 90}),
        ("ash", {"percentile": 65, "variant": "s"}),  # at 85+ AUROC < 0.5 on this 64-d net
        ("gen", {"gamma": 0.1, "top_classes": 100}),
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


def test_every_metric_has_an_interval_in_every_file(evaluated):
    run_dir, _ = evaluated
    out = run_dir / "eval" / "leaveout"
    saved = json.loads((out / "results.json").read_text())
    for row in saved["rows"]:
        for name in ("FPR95", "DetErr", "AUROC", "AUPR-In", "AUPR-Out"):
            low, high = row["intervals"][name]
            assert 0 <= low <= high <= 1
        assert row["intervals"]["AUROC"][0] <= row["AUROC"] <= row["intervals"]["AUROC"][1]
    with open(out / "results.csv") as f:
        first = next(csv.DictReader(f))
    assert float(first["AUROC low"]) <= float(first["AUROC"]) <= float(first["AUROC high"])
    assert "95% percentile bootstrap" in (out / "results.md").read_text()
    assert re.search(r"\| \d+\.\d\d \(\d+\.\d\d-\d+\.\d\d\) \|", (out / "results.md").read_text())


def test_splits_are_saved_beside_the_report_and_reused(evaluated, monkeypatch):
    import leaveout.evaluation as evaluation_module

    run_dir, first = evaluated
    splits = json.loads((run_dir / "eval" / "leaveout" / "splits.json").read_text())
    assert set(splits) == {"id-test", "unseen", "uniform"}
    assert len(splits["uniform"]["tune"]) == 1000 and splits["uniform"]["rule"].startswith("seeded")
    monkeypatch.setattr(evaluation_module, "report_split", lambda *a, **k: pytest.fail("re-split"))
    again = evaluate(run_dir, ["unseen", "uniform"], progress=False, plots=False)
    assert again["rows"] == first["rows"]


def test_a_set_sorted_by_class_keeps_every_class_and_row_order_does_not_matter(evaluated):
    from leaveout.detectors import load_detector
    from leaveout.evaluation import ID_SET, EvaluationSets, Protocol, cached_scores, metrics_row
    from leaveout.rundir import RunDir

    run_dir, _ = evaluated
    run = RunDir(run_dir)
    sets = dict(EvaluationSets(run, None, Protocol()).sets)
    test = sets["test"]
    by_class = test.subset(np.argsort(test.labels, kind="stable"))  # sorted like an ImageFolder
    shuffled = test.subset(np.random.default_rng(0).permutation(len(test)))
    detector = load_detector(run, "leaveout", sets=sets)
    rows = []
    for variant in (by_class, shuffled):
        evaluation = EvaluationSets(run, None, Protocol(), sets | {"test": variant})
        report = evaluation.parts(ID_SET)["report"]
        assert set(np.unique(report.labels)) == set(range(test.num_classes))  # every class reports
        ood = evaluation.parts("uniform")["report"]
        id_scores = cached_scores(run, detector, ID_SET, report)
        rows.append(
            metrics_row(
                "uniform",
                id_scores,
                cached_scores(run, detector, "uniform", ood),
                Protocol(),
                False,
            )
        )
    assert rows[0] == rows[1]  # the same images, the same scores, the same metrics
    with pytest.raises(ConfigError, match="not in the interleaved official order"):
        EvaluationSets(run, None, Protocol(split="odin-first"), sets | {"test": by_class}).parts(
            ID_SET
        )


def test_compare_gives_paired_differences(evaluated, tmp_path):
    from leaveout.evaluation import compare

    run_dir, _ = evaluated
    result = compare(
        (run_dir, "leaveout"), (run_dir, "energy"), ["uniform"], progress=False, out=tmp_path / "c"
    )
    (row,) = result["rows"]
    for metric in ("AUROC", "FPR95"):
        m = row[metric]
        assert m["difference"] == pytest.approx(m["first"] - m["second"])
        assert m["low"] <= m["high"]
    assert (tmp_path / "c" / "compare.md").is_file() and "first - second" in (
        tmp_path / "c" / "compare.md"
    ).read_text()
    same = compare(
        (run_dir, "energy"), (run_dir, "energy"), ["uniform"], progress=False, out=tmp_path / "d"
    )
    assert same["rows"][0]["AUROC"]["low"] == same["rows"][0]["AUROC"]["high"] == 0.0
