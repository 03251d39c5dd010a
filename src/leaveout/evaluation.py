"""Evaluation on the ODIN protocol: ID test images against OOD sets, with tables and plots.

Every set is split by ODIN's rule: the first 1000 images tune, the rest report (sets of fewer
than 2000 images: the first fifth tunes). Metrics are computed on the reporting parts. Scores
are cached in the run directory per (weights, set, detector settings, image content).
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import files
from .data.imageset import ImageSet
from .data.sets import load_dataset
from .data.splits import report_split
from .detectors import Detector, calibrate, list_detectors, load_detector, run_sets
from .detectors.base import DEFAULT_CALIBRATION_IMAGES, subsample
from .ensemble import LeaveOutEnsemble
from .errors import ConfigError, LeaveoutWarning, ShapeError
from .metrics import METRIC_NAMES, ood_metrics
from .reports import csv_table, markdown_table, percent_rows, plot_roc, plot_score_histogram
from .rundir import RunDir

# Below this many OOD images a reporting part gives coarse metrics (FPR95 moves in large steps).
MIN_OOD_IMAGES = 50


def id_test_parts(sets: dict[str, ImageSet]) -> dict[str, ImageSet]:
    """{"tune", "report"} of a run's ID test split."""
    test = sets["test"]
    return report_split(len(test)).apply(test)


def ood_parts(
    name: str,
    sets: dict[str, ImageSet],
    data_root: str | Path | None,
    image_size: tuple[int, int],
    resize: str = "shorter-side",
) -> dict[str, ImageSet]:
    """{"tune", "report"} of an OOD set by name ("unseen": the run's held-out classes) or path
    (images of another size brought to the network's by the `resize` rule)."""
    if name == "unseen":
        if "unseen" not in sets:
            raise ConfigError(
                "'unseen' needs a run trained with data.id_classes (some classes held out)"
            )
        data = sets["unseen"]
    else:
        data = load_dataset(name, root=data_root, size=image_size[0], resize=resize)
    if data.image_size != tuple(image_size):
        raise ShapeError(
            f"OOD set {name} has {data.image_size} images; the network takes {tuple(image_size)}"
        )
    if len(data) < 2:
        raise ShapeError(f"OOD set {name} has {len(data)} images; at least 2 are needed")
    return report_split(len(data)).apply(data)


def capped(data: ImageSet, max_images: int | None, seed: int = 0) -> ImageSet:
    """A seeded subsample of at most `max_images` images (all of them when None)."""
    if max_images is None or len(data) <= max_images:
        return data
    return data.subset(subsample(np.arange(len(data)), max_images, seed), data.name)


def cached_scores(run: RunDir, detector: Detector, set_name: str, data: ImageSet) -> np.ndarray:
    """detector.score_samples(data), cached per weights, settings and image content."""
    key = f"scores-{Path(set_name).name}-{detector.cache_key()}-{data.fingerprint()}"

    def compute() -> dict[str, torch.Tensor]:
        return {"scores": torch.from_numpy(detector.score_samples(data))}

    return run.cached(detector.ensemble.weights_id, key, compute)["scores"].numpy()


def prepare_detector(
    run: RunDir,
    method: str,
    ensemble: LeaveOutEnsemble,
    sets: dict[str, ImageSet],
    params: dict[str, Any],
    max_images: int | None = None,
    **options: Any,
) -> tuple[Detector, str]:
    """The detector to evaluate and how its settings were chosen.

    A leave-out run without a calibration for these weights is calibrated on its left-out
    classes first (and saved); a standard run without one uses the detector's defaults.
    """
    if method == "leaveout" and ensemble.partition is None:
        others = ", ".join(name for name in list_detectors() if name != "leaveout")
        raise ConfigError(
            f"{run.path} is a standard run (no left-out classes): use --method with one of {others}"
        )
    detector = load_detector(run, method, ensemble=ensemble, sets=sets, **options, **params)
    calibrated = getattr(detector, "validation_", None)
    if calibrated is None and not params and ensemble.partition is not None:
        calibrate(run, detector, sets, max_images=max_images or DEFAULT_CALIBRATION_IMAGES)
        calibrated = detector.validation_
    return detector, calibrated or "the detector's defaults (not calibrated)"


def evaluate(
    run_dir: str | Path,
    ood_names: Sequence[str],
    data_root: str | Path | None = None,
    method: str = "leaveout",
    params: dict[str, Any] | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    ood_positive: bool = False,
    progress: bool = True,
    plots: bool = True,
    out: str | Path | None = None,
    max_images: int | None = None,
) -> dict[str, Any]:
    """Score the ID test reporting part and every OOD set's; write results.json/csv/md and plots.

    params: settings that override the calibrated ones (e.g. {"temperature": 10.0}).
    Reports go to `out`, else RUN_DIR/eval/<method>/ (a folder named after the overridden
    settings when params are given). max_images caps every reporting part (seeded subsample).
    Metrics in the returned dict are fractions; the tables show percent.
    """
    started = time.time()
    run = RunDir(run_dir).require()
    ensemble = LeaveOutEnsemble.load(run, device)
    sets = run_sets(run, data_root)
    params = dict(params or {})
    detector, chosen = prepare_detector(
        run, method, ensemble, sets, params, max_images, batch_size=batch_size, progress=progress
    )
    resize = run.read_config().data.resize
    folder = Path(out) if out else run.eval_dir(detector.cache_key() if params else method)

    id_report = capped(id_test_parts(sets)["report"], max_images)
    say(progress, f"scoring {len(id_report)} ID test images ({id_report.name})")
    id_scores = cached_scores(run, detector, "id-test", id_report)
    assert id_report.labels is not None
    accuracy = float(np.mean(ensemble.classify(id_report, batch_size) == id_report.labels))

    rows, curves = [], {}
    for name in ood_names:
        parts = ood_parts(name, sets, data_root, ensemble.image_size, resize)
        report = capped(parts["report"], max_images)
        warn_if_small(name, len(report))
        say(progress, f"scoring {len(report)} images of {name} (reporting part)")
        ood_scores = cached_scores(run, detector, name, report)
        metrics = ood_metrics(id_scores, ood_scores, ood_positive)
        label = set_label(name)
        rows.append({"ood": label, "n_id": len(id_scores), "n_ood": len(ood_scores), **metrics})
        curves[label] = (id_scores, ood_scores)
    result = {
        "method": detector.name,
        "settings": detector.scoring_params(),
        "chosen_on": chosen,
        "id_accuracy": accuracy,
        "convention": "OOD positive" if ood_positive else "ID positive",
        "units": "fractions (tables: percent)",
        "rows": rows,
        "seconds": time.time() - started,
        "folder": str(folder),
    }
    write_results(folder, result)
    if plots:
        for label, (ids, oods) in curves.items():
            plot_score_histogram(folder / f"hist_{label}.png", ids, oods, label, detector.name)
        plot_roc(folder / "roc.png", curves, detector.name)
    return result


def set_label(name: str) -> str:
    """A short name for a set given by name or path: the file or folder name."""
    return Path(name).name.split(".")[0] or name


def warn_if_small(name: str, count: int) -> None:
    if count < MIN_OOD_IMAGES:
        warnings.warn(
            LeaveoutWarning(
                f"{name}: only {count} OOD images in the reporting part (under {MIN_OOD_IMAGES}); "
                "FPR95 and the other metrics move in coarse steps"
            ),
            stacklevel=3,
        )


def say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


RESULT_COLUMNS = ("ood", "n_id", "n_ood", *METRIC_NAMES)


def results_markdown(result: dict[str, Any]) -> str:
    settings = ", ".join(f"{k} = {v}" for k, v in result["settings"].items())
    fpr95 = (
        "ID rejected when 95% of OOD is rejected"
        if result["convention"] == "OOD positive"
        else "OOD accepted when 95% of ID is accepted"
    )
    return (
        f"Method: {result['method']} ({settings}; chosen on {result['chosen_on']}). "
        f"ID accuracy: {100 * result['id_accuracy']:.2f}%. Metrics in percent, "
        f"{result['convention']} (FPR95 = {fpr95}).\n\n"
        + markdown_table(percent_rows(result["rows"], METRIC_NAMES), RESULT_COLUMNS)
        + "\n"
    )


def write_results(folder: Path, result: dict[str, Any]) -> None:
    """results.json (fractions), results.csv and results.md (percent) in `folder`, atomically."""
    files.write_json(folder / "results.json", result)
    rows = [
        r | {"method": result["method"], "id_accuracy": 100 * result["id_accuracy"]}
        for r in percent_rows(result["rows"], METRIC_NAMES)
    ]
    columns = ("method", *RESULT_COLUMNS, "id_accuracy")
    files.write_text(folder / "results.csv", csv_table(rows, columns, digits=None))
    files.write_text(folder / "results.md", results_markdown(result))
