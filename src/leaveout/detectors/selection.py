"""Choosing the detector itself on the left-out classes: no OOD data at all.

`select_detector` calibrates every registered detector on the run's own left-out pairs (each
member's kept vs left-out validation classes, scored by that member alone, the criterion
averaged over members: the search `leaveout calibrate` does for one detector), saves each
detector's calibration, and keeps the one whose best grid point is best by the criterion (FPR95
by default, ties by AUROC). The choice and the table of candidates are saved as
`calibration/auto.json`; `chosen_method(run, "auto")` reads it back. No test set is scored.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..data.imageset import ImageSet
from ..ensemble import LeaveOutEnsemble
from ..errors import ConfigError, LeaveoutError
from ..rundir import RunDir
from .base import DEFAULT_CALIBRATION_IMAGES, best_row
from .registry import create_detector, list_detectors
from .runs import cached_statistics, calibrate, load_detector, transfer_calibration

AUTO = "auto"
CANDIDATE_METRICS = ("FPR95", "DetErr", "AUROC")


def select_detector(
    run: RunDir,
    ensemble: LeaveOutEnsemble,
    sets: dict[str, ImageSet],
    *,
    criterion: str = "fpr95",
    max_images: int = DEFAULT_CALIBRATION_IMAGES,
    names: Sequence[str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Calibrate every detector (or `names`) on the left-out classes and keep the best.

    Returns (and saves as calibration/auto.json) {"chosen", "criterion", "weights",
    "candidates": one row per detector with its chosen settings and left-out metrics (fractions),
    or the error that kept it out}.
    """
    if ensemble.partition is None:
        raise ConfigError(
            f"{run.path} is a standard run: it has no left-out classes to select a detector on"
        )
    rows: list[dict[str, Any]] = []
    for name in names or list_detectors():
        started = time.perf_counter()
        detector = create_detector(name, ensemble, criterion=criterion, **options)
        try:
            cached_statistics(detector, run, sets["train"])
            calibrate(run, detector, sets, max_images=max_images)
        except LeaveoutError as exc:  # e.g. a search value the data cannot support
            rows.append({"detector": name, "error": str(exc)})
            continue
        best = detector.grid_[best_row(detector.grid_, criterion)]
        rows.append(
            {"detector": name, "settings": detector.hyperparameters()}
            | {key: best[key] for key in CANDIDATE_METRICS}
            | {"seconds": time.perf_counter() - started}
        )
    fitted = [row for row in rows if "error" not in row]
    if not fitted:
        raise ConfigError(f"no detector could be calibrated on {run.path}")
    record = {
        "chosen": fitted[best_row(fitted, criterion)]["detector"],
        "criterion": criterion,
        "weights": ensemble.weights_id,
        "validation": "left-out classes of the validation split",
        "candidates": rows,
    }
    run.write_calibration(AUTO, record)
    return record


def carry_selection(
    run: RunDir,
    target: RunDir,
    device: torch.device | str = "cpu",
    data_root: str | Path | None = None,
    **options: Any,
) -> list[Path]:
    """Apply `run`'s selected detector, with its settings, to another run (e.g. the standard
    classifier, which has no left-out classes); returns the two files written there."""
    record = run.current_calibration(AUTO)
    if record is None:
        raise ConfigError(f"{run.path} has no detector selected for its current weights")
    detector = load_detector(run, record["chosen"], device, data_root=data_root, **options)
    written = transfer_calibration(detector, target, device, data_root)
    there = record | {
        "weights": target.weights_id(),
        "validation": f"chosen on the left-out classes of {run.path}",
    }
    return [written, target.write_calibration(AUTO, there)]


def chosen_method(run: RunDir, method: str) -> str:
    """`method`, or for "auto" the detector `select_detector` chose for the run's weights."""
    if method != AUTO:
        return method
    record = run.current_calibration(AUTO)
    if record is None:
        raise ConfigError(
            f"{run.path} has no detector selected for its current weights: run "
            f"`leaveout calibrate {run.path} --select auto` first"
        )
    return str(record["chosen"])
