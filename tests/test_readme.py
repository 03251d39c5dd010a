"""The README cannot rot: every Python block runs, every command parses, the cheap ones run."""

import re
import shlex
import shutil
import subprocess
import sys

import pytest

from leaveout.cli import build_parser, main

from .conftest import REPO, SHARED_DATA

README = (REPO / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
COMMANDS = [
    line.strip()
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    for line in block.replace("\\\n", " ").splitlines()
    if line.strip().startswith("./dev leaveout")
]
# run for real in the test (seconds each); the others only have to parse
CHEAP = ("data", "detectors", "status", "--help", "--version")


def leaveout_args(command: str) -> list[str]:
    words = shlex.split(command.split("#")[0])
    return words[2:]  # drop "./dev leaveout"


@pytest.fixture(scope="module")
def workdir(digits_run, tmp_path_factory):
    """A folder with runs/demo as `./dev leaveout demo` leaves it (trained and calibrated)."""
    _, run_dir, _ = digits_run
    folder = tmp_path_factory.mktemp("readme")
    shutil.copytree(run_dir, folder / "runs" / "demo")
    assert main(["calibrate", str(folder / "runs" / "demo"), "--quiet", "--max-images", "200"]) == 0
    return folder


def test_the_readme_has_examples():
    assert len(PYTHON_BLOCKS) >= 3 and len(COMMANDS) >= 8


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_block_runs(workdir, monkeypatch, index):
    monkeypatch.chdir(workdir)
    exec(compile(PYTHON_BLOCKS[index], f"README.md python block {index + 1}", "exec"), {})


@pytest.mark.parametrize("command", COMMANDS)
def test_command_parses(command):
    build_parser().parse_args(leaveout_args(command))


def test_the_cheap_commands_run_in_order(workdir):
    """The quick commands run for real, in README order (a status follows its train)."""
    cheap = [c for c in COMMANDS if leaveout_args(c)[0] in CHEAP or c.endswith("--quiet")]
    assert any(leaveout_args(c)[0] == "train" for c in cheap)
    for command in cheap:
        args = leaveout_args(command)
        if "../shared/data" in args and not SHARED_DATA.is_dir():
            continue
        args = [str(SHARED_DATA) if a == "../shared/data" else a for a in args]
        result = subprocess.run(
            [sys.executable, "-m", "leaveout", *args],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"{command}: {result.stderr}"


def test_dev_runs_the_tool_without_an_activated_environment():
    """`./dev leaveout ...` works from a shell where .venv is not on PATH."""
    import os

    venv, stamp = REPO / ".venv", REPO / ".venv" / ".installed"
    if not stamp.is_file() or (REPO / "pyproject.toml").stat().st_mtime > stamp.stat().st_mtime:
        pytest.skip("no up-to-date .venv set up by ./dev here (the test must not reinstall it)")
    path = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if not p.startswith(str(venv))
    )
    result = subprocess.run(
        [str(REPO / "dev"), "leaveout", "--version"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path, "VIRTUAL_ENV": ""},
    )
    assert result.returncode == 0 and result.stdout.startswith("leaveout "), result.stderr
