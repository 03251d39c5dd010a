"""Detectors bound to a run directory: loaded in the state `leaveout calibrate` saved, and
calibrated on the run's own left-out classes (or on a named OOD set's tuning part)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig
from ..data.imageset import ImageSet
from ..data.splits import load_run_sets
from ..devices import amp_suffix
from ..ensemble import LeaveOutEnsemble
from ..errors import ConfigError, LeaveoutWarning
from ..rundir import RunDir
from .base import DEFAULT_CALIBRATION_IMAGES, Detector
from .registry import create_detector


def run_sets(run: RunDir | str | Path, data_root: str | Path | None = None) -> dict[str, ImageSet]:
    """The train / val / test (/ unseen) parts the run was trained on."""
    cfg: RunConfig = (run if isinstance(run, RunDir) else RunDir(run)).read_config()
    return load_run_sets(cfg.data, cfg.train.seed, data_root)


def cached_statistics(detector: Detector, run: RunDir, train: ImageSet) -> None:
    """Fit the detector's training statistics, cached per weights, precision and training
    images."""
    if not detector.needs_training_data:
        return
    key = f"{detector.name}-statistics{amp_suffix(detector.amp)}-{train.fingerprint()}"
    tensors = run.cached(
        detector.ensemble.weights_id, key, lambda: detector.fit_statistics(train).state_dict()
    )
    detector.load_state_dict(tensors)


def load_detector(
    run: RunDir | str | Path,
    name: str = "leaveout",
    device: torch.device | str = "cpu",
    *,
    data_root: str | Path | None = None,
    which: str = "best",
    ensemble: LeaveOutEnsemble | None = None,
    sets: dict[str, ImageSet] | None = None,
    **params: Any,
) -> Detector:
    """Detector `name` over a run's networks, with the calibration saved for these weights.

    params override settings (e.g. temperature=10.0); an override of a calibrated value drops
    the saved threshold, which belonged to the calibrated settings. Detectors that need the
    training images (Mahalanobis) read the run's training split from `data_root` (or `sets`).
    """
    run = run if isinstance(run, RunDir) else RunDir(run)
    ensemble = ensemble or LeaveOutEnsemble.load(run, device, which)
    detector = create_detector(name, ensemble, **params)
    if detector.needs_training_data:
        cached_statistics(detector, run, (sets or run_sets(run, data_root))["train"])
    record = run.read_calibration(name)
    if record is not None and record.get("weights") != ensemble.weights_id:
        warnings.warn(
            LeaveoutWarning(
                f"{run.calibration_path(name)} was chosen for other weights and is ignored; "
                f"run `leaveout calibrate {run.path} --method {name}` again"
            ),
            stacklevel=2,
        )
    elif record is not None:
        given = detector.scoring_params()
        detector.apply_calibration(record)
        overridden = {
            k: v for k, v in params.items() if k in given and detector.scoring_params()[k] != v
        }
        if overridden:
            detector.set_params(**{k: v for k, v in overridden.items() if k in detector.settings})
            for key, value in overridden.items():
                if key in detector.default_search_space:
                    setattr(detector, key + "_", value)
            detector.threshold_ = None
        decision = {k: params[k] for k in ("tpr", "criterion") if k in params}
        if any(getattr(detector, k) != v for k, v in decision.items()):
            detector.set_params(**decision)
            detector.threshold_ = None  # the saved one keeps another fraction
    return detector


def calibrate(
    run: RunDir,
    detector: Detector,
    sets: dict[str, ImageSet],
    *,
    ood: ImageSet | None = None,
    id_tuning: ImageSet | None = None,
    max_images: int = DEFAULT_CALIBRATION_IMAGES,
) -> Path:
    """Fit `detector` on the run's left-out classes (or on id_tuning vs ood) and save the result."""
    if ood is not None:
        if id_tuning is None:
            raise ConfigError("calibrating on an OOD set needs the ID tuning images too")
        detector.fit(id_tuning, ood, train=sets["train"])
        detector.validation_ = f"ID test tuning part vs {ood.name}"
    else:
        detector.fit_left_out(sets["val"], train=sets["train"], max_images=max_images)
    return run.write_calibration(detector.name, detector.calibration_record())


def transfer_calibration(
    detector: Detector, target: RunDir, device: torch.device | str, data_root: str | Path | None
) -> Path:
    """The chosen settings of `detector` applied to another run (e.g. a standard classifier,
    which has no left-out classes), with a threshold fitted on that run's own validation split."""
    sets = run_sets(target, data_root)
    options = {
        k: v for k, v in detector.get_params().items() if k not in detector.default_search_space
    }
    other = load_detector(target, detector.name, device, sets=sets, **options)
    for key, value in detector.hyperparameters().items():
        setattr(other, key + "_", value)
    other.fit(sets["val"], train=sets["train"])
    other.validation_ = f"settings chosen on {detector.validation_} of another run"
    other.grid_ = getattr(detector, "grid_", [])
    return target.write_calibration(other.name, other.calibration_record())
