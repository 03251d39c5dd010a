"""Shared fixtures: the real data beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LEAVEOUT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data when present; tests that use it are skipped without it."""
    if not (SHARED_DATA / "cifar10" / "train.npz").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A 4-member leave-out ensemble trained for 2 epochs on the digits: (config, run_dir)."""
    from leaveout import training
    from leaveout.config import resolve

    run_dir = tmp_path_factory.mktemp("runs") / "digits"
    cfg = resolve("digits", overrides=["train.epochs=2"])
    summaries = training.train(cfg, run_dir, device="cpu", progress=False)
    return cfg, run_dir, summaries


@pytest.fixture(scope="session")
def digits_ensemble(digits_run):
    """The digits run's four members, loaded once."""
    from leaveout import LeaveOutEnsemble

    _, run_dir, _ = digits_run
    return LeaveOutEnsemble.load(run_dir)


@pytest.fixture(scope="session")
def digits_sets(digits_run):
    """The digits run's train / val / test / unseen parts."""
    from leaveout.data import load_run_sets

    cfg, _, _ = digits_run
    return load_run_sets(cfg.data, cfg.train.seed)
