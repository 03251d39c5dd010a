"""Choosing the temperature T and the input step eps on validation data (method.md section 5).

Two kinds of validation pair:
- "left-out" (the default, needs no external OOD data): for every member, the validation images
  of its kept classes against those of its own left-out classes, scored by that member alone;
  the criterion is averaged over members.
- a named OOD set: the ID tuning images (the first 1000 of the ID test split) against the tuning
  part of that set (the paper validates on iSUN).
Each grid point costs one forward+backward per (member, T) and one forward per (member, T, eps).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from . import _io
from .baselines import GaussianFit, baseline_grid
from .data import ImageSet
from .errors import ConfigError, ShapeError
from .metrics import auroc, detection_error, fpr_at_tpr
from .scoring import Calibration, LeaveOutEnsemble

PAPER_TEMPERATURES = (1.0, 10.0, 100.0, 1000.0, 5000.0)
PAPER_EPSILONS = (0.0, 0.000313, 0.000625, 0.00125, 0.002, 0.003)
CRITERIA = ("fpr95", "auroc", "deterr")


def _rank_key(row: dict[str, float], criterion: str) -> tuple[float, float]:
    """Smaller is better: the criterion first, then AUROC (ties), then smaller T and eps."""
    if criterion == "fpr95":
        return (row["FPR95"], -row["AUROC"])
    if criterion == "auroc":
        return (-row["AUROC"], row["FPR95"])
    return (row["DetErr"], -row["AUROC"])


def _grid_rows(
    id_scores: np.ndarray,
    ood_scores: np.ndarray,
    temperatures: Sequence[float],
    epsilons: Sequence[float],
) -> list[dict[str, float]]:
    """id/ood scores (T, E, N) -> one row of metrics (percent) per grid point."""
    return [
        {"T": t, "eps": e} | _metrics_row(id_scores[ti, ei], ood_scores[ti, ei])
        for ti, t in enumerate(temperatures)
        for ei, e in enumerate(epsilons)
    ]


def threshold_keeping(id_scores: np.ndarray, fraction: float = 0.95) -> float:
    """The largest threshold that accepts (score >= threshold) at least `fraction` of `id_scores`."""
    ordered = np.sort(np.asarray(id_scores, dtype=np.float64))
    return float(ordered[int(np.floor((1 - fraction) * len(ordered)))])


def _subsample(n: int, limit: int, seed: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def calibrate_left_out(
    ensemble: LeaveOutEnsemble,
    validation: ImageSet,
    temperatures: Sequence[float] = PAPER_TEMPERATURES,
    epsilons: Sequence[float] = PAPER_EPSILONS,
    criterion: str = "fpr95",
    gradient: str = "entropy",
    max_images: int = 2000,
    batch_size: int = 256,
    progress: bool = False,
    score_kind: str = "msp-entropy",
) -> tuple[Calibration, list[dict[str, float]]]:
    """Grid search on each member's own left-out classes; returns the choice and the grid.

    validation: labelled images in the ensemble's class space (the run's validation split).
    max_images caps the ID and the left-out side per member (a seeded subsample).
    """
    _check(criterion, ensemble)
    if ensemble.partition is None or validation.labels is None:
        raise ConfigError(
            "left-out calibration needs a leave-out ensemble and labelled validation images"
        )
    per_member = []
    for m in range(ensemble.k):
        left_out = np.isin(validation.labels, ensemble.partition.left_out(m))
        sides = []
        for mask in (~left_out, left_out):
            index = np.flatnonzero(mask)
            index = index[_subsample(len(index), max_images, seed=m)]
            grid = ensemble.member_scores_grid(
                validation.images[index],
                temperatures,
                epsilons,
                gradient,
                batch_size,
                progress,
                members=[m],
                score_kind=score_kind,
            )
            sides.append(grid[:, :, 0])
        per_member.append(_grid_rows(sides[0], sides[1], temperatures, epsilons))
    rows = [
        {key: float(np.mean([member[i][key] for member in per_member])) for key in per_member[0][i]}
        for i in range(len(per_member[0]))
    ]
    best = min(rows, key=lambda r: _rank_key(r, criterion))
    id_grid = ensemble.member_scores_grid(
        validation, [best["T"]], [best["eps"]], gradient, batch_size, score_kind=score_kind
    )
    id_scores = id_grid[0, 0].sum(axis=0)
    return Calibration(best["T"], best["eps"], threshold_keeping(id_scores), gradient), rows


def calibrate_on_pair(
    ensemble: LeaveOutEnsemble,
    id_tuning: ImageSet | np.ndarray,
    ood_tuning: ImageSet | np.ndarray,
    temperatures: Sequence[float] = PAPER_TEMPERATURES,
    epsilons: Sequence[float] = PAPER_EPSILONS,
    criterion: str = "fpr95",
    gradient: str = "entropy",
    batch_size: int = 256,
    progress: bool = False,
) -> tuple[Calibration, list[dict[str, float]]]:
    """Grid search on ID tuning images against OOD tuning images (ensemble score S)."""
    _check(criterion, ensemble)
    id_grid = ensemble.member_scores_grid(
        id_tuning, temperatures, epsilons, gradient, batch_size, progress
    )
    ood_grid = ensemble.member_scores_grid(
        ood_tuning, temperatures, epsilons, gradient, batch_size, progress
    )
    id_sum, ood_sum = id_grid.sum(axis=2), ood_grid.sum(axis=2)
    rows = _grid_rows(id_sum, ood_sum, temperatures, epsilons)
    best_index = min(range(len(rows)), key=lambda i: _rank_key(rows[i], criterion))
    ti, ei = divmod(best_index, len(epsilons))
    threshold = threshold_keeping(id_sum[ti, ei])
    return Calibration(temperatures[ti], epsilons[ei], threshold, gradient), rows


BASELINE_GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "msp": {"temperature": PAPER_TEMPERATURES},
    "energy": {"temperature": PAPER_TEMPERATURES},
    "odin": {"temperature": PAPER_TEMPERATURES, "epsilon": PAPER_EPSILONS},
    "mahalanobis": {"epsilon": PAPER_EPSILONS},
}


def calibrate_baseline_left_out(
    name: str,
    ensemble: LeaveOutEnsemble,
    validation: ImageSet,
    fits: Sequence[GaussianFit] | None = None,
    criterion: str = "fpr95",
    max_images: int = 1000,
    batch_size: int = 256,
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """A baseline's settings chosen on the same pairs as the ensemble: each member's kept vs
    left-out validation classes, scored by that member alone, averaged over members.

    The chosen settings transfer to a standard classifier, which has no left-out classes.
    """
    _check(criterion, ensemble)
    if ensemble.partition is None or validation.labels is None:
        raise ConfigError(
            "left-out calibration needs a leave-out ensemble and labelled validation images"
        )
    grid = BASELINE_GRIDS[name]
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    per_member = []
    for m in range(ensemble.k):
        view = ensemble.member_view(m)
        member_fits = None if fits is None else [fits[m]]
        left_out = np.isin(validation.labels, ensemble.partition.left_out(m))
        sides = []
        for mask in (~left_out, left_out):
            index = np.flatnonzero(mask)
            index = index[_subsample(len(index), max_images, seed=m)]
            images = validation.images[index]
            sides.append(baseline_grid(name, view, images, points, member_fits, batch_size))
        per_member.append([_metrics_row(i, o) for i, o in zip(*sides)])
    rows = [
        point
        | {
            key: float(np.mean([member[i][key] for member in per_member]))
            for key in per_member[0][i]
        }
        for i, point in enumerate(points)
    ]
    best = min(rows, key=lambda r: _rank_key(r, criterion))
    return {key: best[key] for key in grid}, rows


def _metrics_row(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, float]:
    return {
        "FPR95": 100 * fpr_at_tpr(id_scores, ood_scores),
        "DetErr": 100 * detection_error(id_scores, ood_scores),
        "AUROC": 100 * auroc(id_scores, ood_scores),
    }


def _check(criterion: str, ensemble: LeaveOutEnsemble) -> None:
    if criterion not in CRITERIA:
        raise ConfigError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    if ensemble.k == 0:
        raise ShapeError("the ensemble has no members")


def save_calibration(
    run_dir: Path,
    calibration: Calibration,
    rows: list[dict[str, float]],
    source: str,
    criterion: str,
) -> Path:
    """Write RUN_DIR/calibration.json (used by default afterwards)."""
    path = Path(run_dir) / "calibration.json"
    record: dict[str, Any] = asdict(calibration) | {
        "criterion": criterion,
        "source": source,
        "grid": rows,
    }
    _io.write_json(path, record)
    return path


def read_calibration_record(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "calibration.json"
    return json.loads(path.read_text()) if path.is_file() else None


def save_baseline_calibration(
    run_dir: Path,
    name: str,
    settings: dict[str, float],
    rows: list[dict[str, float]],
    source: str,
    criterion: str,
) -> Path:
    """Write RUN_DIR/calibration-<name>.json (read by `evaluate --method NAME`)."""
    path = Path(run_dir) / f"calibration-{name}.json"
    _io.write_json(path, settings | {"criterion": criterion, "source": source, "grid": rows})
    return path
