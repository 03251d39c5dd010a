import argparse
import json
import subprocess
import sys

import numpy as np
import pytest

from leaveout.cli import build_parser, main
from leaveout.detectors import list_detectors

from .helpers import write_image_files


def test_data_lists_every_dataset(tmp_path, capsys):
    assert main(["data", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in (
        "cifar10",
        "cifar100",
        "tiny_imagenet_crop",
        "lsun_resize",
        "isun",
        "uniform",
        "digits",
    ):
        assert name in out
    assert "missing" in out and "cifar-10-python.tar.gz" in out


def test_data_describes_digits(capsys):
    assert main(["data", "digits"]) == 0
    assert "digits: 1797 images, 16x16 RGB" in capsys.readouterr().out


def test_missing_set_is_a_clear_error_with_exit_code_2(tmp_path, capsys):
    assert main(["data", "isun", "--data-root", str(tmp_path)]) == 2
    assert "iSUN.tar.gz" in capsys.readouterr().err


def test_version_and_help(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("leaveout ")
    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subcommands.choices.items():
        assert "examples:" in (sub.epilog or ""), name
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.dest} has no help"
        text = sub.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text, name
        if name == "evaluate":
            assert "(default: 256)" in text and "(default: leaveout)" in text


def test_console_script_on_shared_data(shared_data):
    result = subprocess.run(
        [sys.executable, "-m", "leaveout", "data", "--data-root", str(shared_data)],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = {
        line.split()[0] + "/" + line.split()[1]: line
        for line in result.stdout.splitlines()
        if line[:1].isalpha() and len(line.split()) > 4
    }
    assert "present" in lines["cifar10/train"] and "50000" in lines["cifar10/train"]
    assert (
        "present" in lines["tiny_imagenet_crop/all"] and "10000" in lines["tiny_imagenet_crop/all"]
    )
    assert "missing" in lines["lsun_crop/all"]


@pytest.mark.parametrize("command", ["calibrate", "evaluate", "score"])
@pytest.mark.parametrize(
    ("device", "message"), [("gpu", "unknown device 'gpu'"), ("cuda", "no CUDA")]
)
def test_bad_devices_are_one_line_errors(digits_run, capsys, command, device, message):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _, run_dir, _ = digits_run
    args = [command, str(run_dir), "--device", device, "--quiet"]
    if command == "score":
        args.insert(2, str(run_dir / "run.json"))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_an_output_under_a_file_is_a_one_line_error(digits_run, tmp_path, capsys):
    import shutil

    _, trained, _ = digits_run
    run_dir = tmp_path / "run"  # a copy: evaluate calibrates and caches into the run
    shutil.copytree(trained, run_dir)
    (tmp_path / "file").write_text("x")
    code = main(
        [
            "evaluate",
            str(run_dir),
            "--ood",
            "uniform",
            "--max-images",
            "50",
            "--quiet",
            "--out",
            str(tmp_path / "file" / "r"),
        ]
    )
    assert code == 2 and "could not write" in capsys.readouterr().err


@pytest.fixture(scope="module")
def calibrated(digits_run, tmp_path_factory):
    import shutil

    _, run_dir, _ = digits_run
    copy = tmp_path_factory.mktemp("cli") / "run"
    shutil.copytree(run_dir, copy)
    assert main(["calibrate", str(copy), "--quiet", "--max-images", "150", "--device", "auto"]) == 0
    return copy


def test_select_auto_prints_every_candidate_and_evaluate_uses_the_choice(
    digits_run, tmp_path, capsys
):
    import shutil

    _, run_dir, _ = digits_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    assert main(["calibrate", str(copy), "--select", "auto", "--quiet", "--max-images", "100"]) == 0
    out = capsys.readouterr().out
    chosen = json.loads((copy / "calibration" / "auto.json").read_text())["chosen"]
    names = set(list_detectors())
    rows = [words for words in map(str.split, out.splitlines()) if names & set(words[:2])]
    assert len(rows) >= 10 and [["*", chosen]] == [w[:2] for w in rows if w[0] == "*"]
    assert f"chosen by fpr95 on the left-out classes: {chosen}" in out
    args = ["evaluate", str(copy), "--method", "auto", "--ood", "unseen", "--quiet"]
    assert main([*args, "--max-images", "100", "--resamples", "50"]) == 0
    result = json.loads((copy / "eval" / chosen / "results.json").read_text())
    assert result["method"] == chosen


def test_calibrate_prints_the_grid_with_enough_digits(calibrated, capsys):
    assert (
        main(["calibrate", str(calibrated), "--quiet", "--max-images", "100", "--tpr", "0.9"]) == 0
    )
    out = capsys.readouterr().out
    assert "0.000313" in out and "0.000625" in out and "keeps 90% of ID validation images" in out
    saved = json.loads((calibrated / "calibration" / "leaveout.json").read_text())
    assert saved["tpr"] == 0.9 and len(saved["grid"]) == 30
    chosen = next(r for r in saved["grid"] if all(r[k] == v for k, v in saved["params"].items()))
    assert "chosen_share" in out
    assert f"wins {100 * chosen['chosen_share']:.0f}% of 200 bootstrap resamples" in out
    assert (
        main(
            [
                "calibrate",
                str(calibrated),
                "--ood",
                "gaussian",
                "--criterion",
                "auroc",
                "--quiet",
                "--max-images",
                "100",
            ]
        )
        == 0
    )
    saved = json.loads((calibrated / "calibration" / "leaveout.json").read_text())
    assert "gaussian" in saved["validation"] and saved["criterion"] == "auroc"


def test_calibrate_a_baseline_and_write_it_into_another_run(calibrated, tmp_path, capsys):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(calibrated, other)
    assert (
        main(
            [
                "calibrate",
                str(calibrated),
                "--method",
                "msp",
                "--also",
                str(other),
                "--quiet",
                "--max-images",
                "100",
            ]
        )
        == 0
    )
    for folder in (calibrated, other):
        saved = json.loads((folder / "calibration" / "msp.json").read_text())
        assert (
            saved["params"]["temperature"] in (1, 10, 100, 1000, 5000)
            and saved["threshold"] is not None
        )


@pytest.fixture
def photos(tmp_path):
    images = np.zeros((3, 16, 16, 3), np.uint8)
    images[:, 4:12, 6:10] = 255
    write_image_files(tmp_path / "imgs", images)
    return tmp_path / "imgs", images


def test_score_in_bf16_is_close_to_float32(calibrated, photos, tmp_path):
    folder, _ = photos
    scores = []
    for amp in ("none", "bf16"):
        out = tmp_path / f"{amp}.json"
        args = ["score", str(calibrated), str(folder), "--out", str(out), "--quiet", "--amp", amp]
        assert main(args) == 0
        scores.append([r["score"] for r in json.loads(out.read_text())["images"]])
    np.testing.assert_allclose(scores[1], scores[0], atol=0.2)
    assert scores[1] != scores[0]


def test_score_writes_csv_with_the_calibrated_threshold(calibrated, photos, tmp_path):
    folder, _ = photos
    out = tmp_path / "scores.csv"
    assert main(["score", str(calibrated), str(folder), "--out", str(out), "--quiet"]) == 0
    import csv

    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and {"path", "score", "is_ood", "predicted"} <= set(rows[0])
    threshold = json.loads((calibrated / "calibration" / "leaveout.json").read_text())["threshold"]
    assert all(int(r["is_ood"]) == (float(r["score"]) < threshold) for r in rows)
    assert len(rows[0]["score"].split(".")[1]) > 6  # full precision, not rounded to 6 decimals


def test_score_json_npz_tpr_threshold_and_gradient(calibrated, photos, tmp_path):
    from leaveout import ImageSet, save_npz

    folder, images = photos
    save_npz(ImageSet(images, None, (), "x"), tmp_path / "x.npz")
    out = tmp_path / "s.json"
    assert (
        main(
            [
                "score",
                str(calibrated),
                str(tmp_path / "x.npz"),
                "--out",
                str(out),
                "--quiet",
                "--tpr",
                "0.5",
            ]
        )
        == 0
    )
    record = json.loads(out.read_text())
    assert [r["path"] for r in record["images"]] == [f"{tmp_path / 'x.npz'}[{i}]" for i in range(3)]
    assert "50%" in record["threshold_rule"]
    assert (
        main(
            [
                "score",
                str(calibrated),
                str(folder),
                "--out",
                str(out),
                "--quiet",
                "--threshold",
                "1e9",
            ]
        )
        == 0
    )
    assert all(r["is_ood"] == 1 for r in json.loads(out.read_text())["images"])
    scores = {}
    for grad in ("entropy", "odin"):
        assert (
            main(
                [
                    "score",
                    str(calibrated),
                    str(folder),
                    "--out",
                    str(out),
                    "--quiet",
                    "--gradient",
                    grad,
                    "--threshold",
                    "0",
                ]
            )
            == 0
        )
        record = json.loads(out.read_text())
        scores[grad] = [r["score"] for r in record["images"]]
        assert record["settings"]["gradient"] == grad
    epsilon = json.loads((calibrated / "calibration" / "leaveout.json").read_text())["params"][
        "epsilon"
    ]
    assert epsilon == 0 or scores["entropy"] != scores["odin"]


def test_score_skips_corrupt_images_with_one_clean_line(calibrated, photos, capsys):
    folder, _ = photos
    (folder / "broken.png").write_bytes(b"nope")
    assert main(["score", str(calibrated), str(folder), "--quiet"]) == 2
    assert "--skip-corrupt" in capsys.readouterr().err
    assert main(["score", str(calibrated), str(folder), "--quiet", "--skip-corrupt"]) == 0
    err = capsys.readouterr().err
    assert (
        "warning: " in err and "skipped 1 unreadable images" in err and "warnings.warn" not in err
    )


def test_score_without_calibration_says_what_to_do(digits_run, tmp_path, photos, capsys):
    import shutil

    _, run_dir, _ = digits_run
    shutil.copytree(run_dir, tmp_path / "fresh")
    folder, _ = photos
    assert (
        main(["score", str(tmp_path / "fresh"), str(folder), "--quiet", "--method", "energy"]) == 2
    )
    assert "leaveout calibrate" in capsys.readouterr().err


def test_status_and_detectors_commands(calibrated, capsys):
    assert main(["status", str(calibrated)]) == 0
    out = capsys.readouterr().out
    assert out.count("done") == 4
    assert main(["detectors"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[2].startswith("leaveout") and "mahalanobis" in out


def test_demo_passes_the_device_to_every_stage(monkeypatch, tmp_path):
    from leaveout import demo

    seen = {}
    monkeypatch.setattr(
        demo, "train", lambda cfg, out, device, progress: seen.setdefault("train", device) and []
    )
    monkeypatch.setattr(demo, "summary_table", lambda s: "")

    def fake_evaluate(out, names, device, progress):
        seen["evaluate"] = device
        raise SystemExit

    monkeypatch.setattr(demo, "evaluate", fake_evaluate)
    with pytest.raises(SystemExit):
        demo.run_demo(tmp_path, device="cuda:1")
    assert seen == {"train": "cuda:1", "evaluate": "cuda:1"}


@pytest.mark.slow
def test_demo_trains_calibrates_and_evaluates(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    out = capsys.readouterr().out
    for name in (
        "| unseen |",
        "| uniform |",
        "| gaussian |",
        "calibrated: T =",
        "Noise is the hard case",
    ):
        assert name in out
    assert (tmp_path / "demo" / "eval" / "leaveout" / "results.md").is_file()


def test_score_to_standard_output_is_pure_csv(calibrated, photos, capsys):
    folder, _ = photos
    assert main(["score", str(calibrated), str(folder)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == "path,score,is_ood,predicted"
    assert "scoring 3 images" in captured.err and "3 images scored" in captured.err


def test_score_refuses_a_calibration_of_other_weights(calibrated, photos, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(calibrated, copy)
    path = copy / "calibration" / "leaveout.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"weights": "000000000000"}))
    folder, _ = photos
    assert main(["score", str(copy), str(folder), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "other weights" in err and "no calibration of leaveout for its current weights" in err


def test_gradient_is_refused_for_detectors_without_it(calibrated, photos, capsys):
    folder, _ = photos
    assert (
        main(["score", str(calibrated), str(folder), "--method", "msp", "--gradient", "odin"]) == 2
    )
    assert "--gradient is a setting of the leaveout detector, not of msp" in capsys.readouterr().err


def test_pack_a_folder_then_train_from_the_packed_set(tmp_path, capsys):
    from leaveout.data import load_images
    from leaveout.rundir import RunDir

    for c, name in enumerate(["ant", "bee", "cow"]):
        images = np.zeros((20, 24, 24, 3), np.uint8)
        images[:, :, c * 8 : c * 8 + 8] = 200
        images[:, ::2] += np.arange(20, dtype=np.uint8)[:, None, None, None]
        write_image_files(tmp_path / "photos" / name, images)
    packed = tmp_path / "packed"
    argv = ["pack", str(tmp_path / "photos"), str(packed), "--size", "20", "--quiet"]
    assert main(argv) == 0
    assert "packed 60 images (20x20, 3 classes)" in capsys.readouterr().out
    assert main(argv) == 2  # a complete packed folder is not overwritten
    assert "exists" in capsys.readouterr().err
    assert main(["data", str(packed)]) == 0
    assert "60 images, 20x20 RGB" in capsys.readouterr().out
    np.testing.assert_array_equal(
        np.load(packed / "images.npy", mmap_mode="r"), load_images(tmp_path / "photos", 20).images
    )
    train = ["train", "--preset", "digits", "--data", str(packed), "--out", str(tmp_path / "run")]
    settings = ["train.epochs=1", "train.k=3", "data.id_classes=[0, 1, 2]"]
    assert main([*train, *(f"--set={s}" for s in settings), "--quiet"]) == 0
    info = RunDir(tmp_path / "run").read_info()
    assert info.image_size == (20, 20) and info.classes == ("ant", "bee", "cow")


def test_score_a_packed_set_as_its_folder(calibrated, photos, tmp_path):
    folder, _ = photos
    packed = tmp_path / "packed"
    assert main(["pack", str(folder), str(packed), "--size", "16", "16", "--quiet"]) == 0
    records = []
    for source in (folder, packed):
        out = tmp_path / f"{source.name}.json"
        assert main(["score", str(calibrated), str(source), "--out", str(out), "--quiet"]) == 0
        records.append(json.loads(out.read_text())["images"])
    assert [r["score"] for r in records[0]] == [r["score"] for r in records[1]]
    assert [r["path"] for r in records[1]] == [f"{packed}:img_{i:04d}.png" for i in range(3)]
    assert main(["pack", str(folder), str(tmp_path / "p32"), "--quiet"]) == 0
    assert main(["score", str(calibrated), str(tmp_path / "p32"), "--quiet"]) == 2


def test_param_overrides_any_detector_setting(calibrated, tmp_path, capsys):
    out = tmp_path / "knn"
    base = ["evaluate", str(calibrated), "--ood", "uniform", "--quiet", "--max-images", "60"]
    assert main([*base, "--method", "knn", "--param", "k=3", "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["settings"]["k"] == 3
    assert main([*base, "--method", "knn", "--param", "depth=2"]) == 2
    assert "unexpected keyword argument 'depth'" in capsys.readouterr().err
    assert main([*base, "--method", "knn", "--param", "k"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
