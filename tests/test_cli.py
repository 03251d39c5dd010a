import subprocess
import sys

import pytest

from leaveout.cli import main


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


@pytest.mark.slow
def test_demo_trains_calibrates_and_evaluates(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    out = capsys.readouterr().out
    for name in ("| unseen |", "| uniform |", "| gaussian |", "calibrated: T ="):
        assert name in out
    assert (tmp_path / "demo" / "eval" / "results.md").is_file()
