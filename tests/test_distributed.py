import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from leaveout.cli import main
from leaveout.data import Augment, BatchStream, ImageSet, Normalization, load_digits, save_npz
from leaveout.distributed import World
from leaveout.ensemble import LeaveOutEnsemble
from leaveout.rundir import RunDir

from .helpers import digits_train_command

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TORCHRUN_2 = [
    sys.executable,
    "-m",
    "torch.distributed.run",
    "--standalone",
    "--nproc_per_node",
    "2",
]


def test_shards_of_a_global_batch_put_together_are_the_global_batch():
    images = torch.from_numpy(
        np.random.default_rng(0).integers(0, 256, (40, 6, 6, 3), dtype=np.uint8)
    )
    labels = torch.arange(40)

    def epoch(world):
        stream = BatchStream(
            images,
            labels,
            8,
            Normalization(),
            Augment(2, True),
            seed=3,
            rank=world.rank,
            world_size=world.size,
        )
        return list(stream.epoch(1))

    whole = epoch(World())
    parts = [epoch(World(rank, 2, rank)) for rank in range(2)]
    for step, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][step][1], parts[1][step][1]]), y)
        assert torch.equal(torch.cat([parts[0][step][0], parts[1][step][0]]), x)


def _digits32(tmp_path):
    """The digits at 32x32 as a labelled npz (for the BatchNorm-free tutorial network)."""
    digits = load_digits(size=32)
    path = tmp_path / "digits32.npz"
    save_npz(ImageSet(digits.images, digits.labels, digits.classes, "digits32"), path)
    return path


def _train_command(data, out, *extra):
    return [
        "train",
        "--preset",
        "digits",
        "--quiet",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--set",
        f'data.dataset="{data}"',
        "--set",
        'model.name="tutorial_cnn"',
        "--set",
        "train.k=2",
        "--set",
        "train.epochs=1",
        "--set",
        "train.batch_size=32",
        "--set",
        "train.ood_batch_size=32",
        *extra,
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("beta", "tolerance"), [(0.0, 1e-5), (0.2, 1e-3)])
def test_torchrun_two_processes_match_one_process(tmp_path, beta, tolerance):
    """Same global batch: with beta = 0 the averaged gradients equal the single-process ones
    up to float summation order (tolerance 1e-5); the margin term is a hinge of per-process batch
    means, so with beta = 0.2 the two runs agree to 1e-3."""
    data = _digits32(tmp_path)
    extra = ("--set", f"train.beta={beta}")
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(
        [sys.executable, "-m", "leaveout", *_train_command(data, one, *extra)], check=True, env=ENV
    )
    subprocess.run(
        [*TORCHRUN_2, "-m", "leaveout", *_train_command(data, two, *extra)], check=True, env=ENV
    )
    for member in range(2):
        a = RunDir(one).read_weights(member, "last")
        b = RunDir(two).read_weights(member, "last")
        worst = max((a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point())
        assert worst < tolerance, f"member {member}: largest weight difference {worst}"
    lines = (two / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # only rank 0 wrote


@pytest.mark.slow
def test_two_member_jobs_into_one_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    base = [*digits_train_command("train.k=2", "train.epochs=2"), "--out", str(out)]
    jobs = [subprocess.Popen([*base, "--member", str(m)], env=ENV) for m in (0, 1)]
    assert [job.wait() for job in jobs] == [0, 0]
    ensemble = LeaveOutEnsemble.load(out)
    assert ensemble.k == 2
    records = RunDir(out).read_metrics()
    assert sorted((r["member"], r["epoch"]) for r in records) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert main(["status", str(out)]) == 0
    assert capsys.readouterr().out.count("done") == 2


def test_status_shows_missing_stopped_and_failed(digits_run, tmp_path, capsys):
    import shutil

    _, run_dir, _ = digits_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(RunDir(copy).member_dir(3))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state_path = RunDir(copy).member_dir(1) / "state.json"
    state = json.loads(state_path.read_text()) | {"status": "training", "pid": dead.pid}
    state_path.write_text(json.dumps(state))
    failed_path = RunDir(copy).member_dir(2) / "state.json"
    failed = json.loads(failed_path.read_text()) | {
        "status": "failed",
        "error": "TrainingDivergedError: nan",
    }
    failed_path.write_text(json.dumps(failed))
    statuses = [row["status"] for row in RunDir(copy).status()]
    assert statuses[0] == "done" and statuses[1].startswith("stopped")
    assert statuses[2] == "failed: TrainingDivergedError: nan" and statuses[3] == "missing"
    assert main(["status", str(copy)]) == 0
    assert "missing" in capsys.readouterr().out


@pytest.mark.slow
def test_torchrun_resumes_after_the_job_is_stopped(tmp_path):
    """Stop a 2-process torchrun job after its first epoch; the same command continues and ends
    with the weights of an uninterrupted 2-process run."""
    import signal
    import time

    data = _digits32(tmp_path)
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"

    def run(out):
        return [
            *TORCHRUN_2,
            "-m",
            "leaveout",
            *_train_command(data, out, "--set", "train.epochs=3"),
        ]

    subprocess.run(run(whole), check=True, env=ENV)
    proc = subprocess.Popen(
        run(stopped), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while len(RunDir(stopped).read_metrics()) < 1 and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on to its workers
    proc.wait()
    assert len(RunDir(stopped).read_metrics()) < 6, "the job finished before it was stopped"
    subprocess.run(run(stopped), check=True, env=ENV)
    for member in range(2):
        a = RunDir(whole).read_weights(member, "last")
        b = RunDir(stopped).read_weights(member, "last")
        assert all(torch.equal(a[k], b[k]) for k in a), f"member {member} differs after the resume"
