"""SIGKILL at random moments, including halfway through a checkpoint write: the re-run resumes,
never loads a truncated file, and ends with the weights of an uninterrupted run (CPU, same seed)."""

import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch

from leaveout.files import read_safetensors
from leaveout.rundir import RunDir

from ..helpers import digits_train_command

COMMAND = digits_train_command("train.k=2", "train.epochs=3")
ENV = {**os.environ, "OMP_NUM_THREADS": "2"}


def _run(out, env=ENV):
    return subprocess.run([*COMMAND, "--out", str(out)], env=env, capture_output=True, text=True)


def _assert_same_weights(a_dir, b_dir):
    for member in range(2):
        for name in ("best", "last"):
            a = RunDir(a_dir).read_weights(member, name)
            b = RunDir(b_dir).read_weights(member, name)
            assert all(torch.equal(a[k], b[k]) for k in a), f"member {member} {name} differs"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    assert _run(out).returncode == 0
    return out


@pytest.mark.slow
def test_killed_halfway_through_a_checkpoint_write(reference, tmp_path):
    out = tmp_path / "run"
    env = {**ENV, "LEAVEOUT_FAULT_KILL_WRITE": "checkpoint.safetensors:2"}
    killed = _run(out, env)
    assert killed.returncode == -signal.SIGKILL
    folder = RunDir(out).member_dir(0)
    assert list(folder.glob(".checkpoint.safetensors.*.tmp")), (
        "the half-written file is a temporary"
    )
    _, meta = read_safetensors(folder / "checkpoint.safetensors")  # the previous one, whole
    assert '"epoch": 1' in meta["progress"]
    assert _run(out).returncode == 0
    assert not list(folder.glob(".*.tmp"))
    _assert_same_weights(reference, out)


@pytest.mark.slow
def test_killed_at_random_moments(reference, tmp_path):
    """Three kills, each at a random moment after a random number of finished epochs."""
    out = tmp_path / "run"
    rng = np.random.default_rng(20261128)
    targets = sorted(rng.choice(np.arange(1, 6), size=3, replace=False))  # of 6 epoch records
    interrupted = 0
    for target in targets:
        proc = subprocess.Popen(
            [*COMMAND, "--out", str(out)],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while (
            proc.poll() is None
            and len(RunDir(out).read_metrics()) < target
            and time.time() < deadline
        ):
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.1))  # somewhere inside the next epoch, or a write
        proc.send_signal(signal.SIGKILL)
        interrupted += proc.wait() == -signal.SIGKILL
    assert interrupted >= 2, "the kills did not land while the run was going"
    assert _run(out).returncode == 0
    _assert_same_weights(reference, out)
