"""Evaluation on the ODIN protocol: ID test images against OOD sets, tables and plots.

Every set is split by ODIN's rule: the first 1000 images tune, the rest report (sets of fewer
than 2000 images: the first fifth tunes). Metrics are computed on the reporting parts.
Scores are cached under RUN_DIR/eval/cache/<weights digest>/ per (set, method settings, image
content).
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _io
from .baselines import METHODS, GaussianFit, fit_member_gaussians, score_baseline
from .calibration import calibrate_left_out, save_calibration
from .config import RunConfig, read_toml
from .data import ImageSet, Split, odin_split
from .datasets import load_dataset
from .errors import ConfigError, ShapeError
from .metrics import METRIC_NAMES, ood_metrics
from .reports import csv_table, markdown_table, plot_roc, plot_score_histogram
from .scoring import LeaveOutEnsemble
from .training import load_splits

Scorer = Callable[[ImageSet], np.ndarray]


def report_split(n: int) -> Split:
    """ODIN's tuning/reporting split; the first fifth tunes when a set has under 2000 images."""
    return odin_split(n, 1000 if n >= 2000 else max(1, n // 5))


def run_config(run_dir: Path) -> RunConfig:
    return RunConfig.from_dict(read_toml(Path(run_dir) / "config.toml")).validate()


def id_test_parts(splits: dict[str, ImageSet]) -> dict[str, ImageSet]:
    """{"tune", "report"} of a run's ID test split (`splits` from `training.load_splits`)."""
    test = splits["test"]
    return report_split(len(test)).apply(test)


def ood_parts(
    name: str,
    splits: dict[str, ImageSet],
    data_root: str | Path | None,
    image_size: tuple[int, int],
) -> dict[str, ImageSet]:
    """{"tune", "report"} of an OOD set by name ("unseen": the run's held-out classes) or path."""
    if name == "unseen":
        parts = splits
        if "unseen" not in parts:
            raise ConfigError(
                "'unseen' needs a run trained with data.id_classes (some classes held out)"
            )
        data = parts["unseen"]
    else:
        data = load_dataset(name, root=data_root, size=image_size[0])
    if data.image_size != tuple(image_size):
        raise ShapeError(
            f"OOD set {name} has {data.image_size} images; the ensemble takes {tuple(image_size)}"
        )
    return report_split(len(data)).apply(data)


def cache_dir(run_dir: Path, ensemble: LeaveOutEnsemble) -> Path:
    """Where scores and fits of these weights are cached: retrained weights get a fresh folder."""
    return Path(run_dir) / "eval" / "cache" / ensemble.weights_id


def fingerprint(images: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(images).data).hexdigest()[:12]


def cached_scores(
    folder: Path, set_name: str, key: str, data: ImageSet, scorer: Scorer
) -> np.ndarray:
    """scorer(data), read from / written to folder/<set>-<key>-<content hash>.npy."""
    path = folder / f"{Path(set_name).name}-{key}-{fingerprint(data.images)}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    scores = np.asarray(scorer(data), dtype=np.float64)
    buffer = io.BytesIO()
    np.save(buffer, scores, allow_pickle=False)
    _io.write_bytes(path, buffer.getvalue())
    return scores


@dataclass
class Method:
    """A scoring method bound to its settings: `scorer` and a cache `key`."""

    name: str
    key: str
    scorer: Scorer
    settings: dict[str, Any]


def leaveout_method(
    ensemble: LeaveOutEnsemble,
    temperature: float,
    epsilon: float,
    gradient: str,
    batch_size: int,
    progress: bool,
) -> Method:
    def scorer(data: ImageSet) -> np.ndarray:
        return ensemble.score(data, temperature, epsilon, gradient, batch_size, progress)

    return Method(
        "leaveout",
        f"leaveout-{gradient}-T{temperature:g}-eps{epsilon:g}",
        scorer,
        {"temperature": temperature, "epsilon": epsilon, "gradient": gradient},
    )


BASELINE_DEFAULTS: dict[str, dict[str, float]] = {
    "msp": {"temperature": 1.0},
    "energy": {"temperature": 1.0},
    "odin": {"temperature": 1000.0, "epsilon": 0.0014},  # ODIN's CIFAR-10 DenseNet values
    "mahalanobis": {"epsilon": 0.0},
}


def baseline_settings(
    name: str, run_dir: Path, temperature: float | None, epsilon: float | None
) -> dict[str, float]:
    """Defaults, then RUN_DIR/calibration-<name>.json if present, then explicit values."""
    import json

    settings = dict(BASELINE_DEFAULTS[name])
    saved = run_dir / f"calibration-{name}.json"
    if saved.is_file():
        record = json.loads(saved.read_text())
        settings |= {k: float(record[k]) for k in settings if k in record}
    for key, value in (("temperature", temperature), ("epsilon", epsilon)):
        if value is not None:
            if key not in settings:
                raise ConfigError(f"method {name} has no {key}")
            settings[key] = float(value)
    return settings


def gaussian_fits(
    ensemble: LeaveOutEnsemble, train: ImageSet, folder: Path, batch_size: int
) -> list[GaussianFit]:
    """Mahalanobis class means and precision per member, fitted once and cached."""
    from safetensors.torch import load_file, save

    path = folder / f"gaussians-{fingerprint(train.images)}.safetensors"
    if path.is_file():
        tensors = load_file(path)
        return [
            GaussianFit(
                tensors[f"means.{m}"].to(ensemble.device),
                tensors[f"precision.{m}"].to(ensemble.device),
            )
            for m in range(ensemble.k)
        ]
    fits = fit_member_gaussians(ensemble, train, batch_size)
    tensors = {}
    for m, fit in enumerate(fits):
        tensors[f"means.{m}"] = fit.means.cpu().contiguous()
        tensors[f"precision.{m}"] = fit.precision.cpu().contiguous()
    _io.write_bytes(path, save(tensors))
    return fits


def make_method(
    name: str,
    ensemble: LeaveOutEnsemble,
    splits: dict[str, ImageSet],
    run_dir: Path,
    temperature: float | None = None,
    epsilon: float | None = None,
    gradient: str | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> Method:
    """The scorer of `name` (leaveout, msp, odin, energy, mahalanobis) with its settings."""
    if name not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}; got {name!r}")
    if name == "leaveout":
        if ensemble.partition is None:
            raise ConfigError(
                f"{run_dir} is a standard run: use --method msp, odin, energy or mahalanobis"
            )
        if temperature is None and epsilon is None:
            ensure_calibration(ensemble, run_dir, splits["val"], batch_size, progress)
        t, e = ensemble._settings(temperature, epsilon)
        grad = gradient or (ensemble.calibration.gradient if ensemble.calibration else "entropy")
        return leaveout_method(ensemble, t, e, grad, batch_size, progress)
    settings = baseline_settings(name, run_dir, temperature, epsilon)
    fits = None
    if name == "mahalanobis":
        fits = gaussian_fits(ensemble, splits["train"], cache_dir(run_dir, ensemble), batch_size)

    def scorer(data: ImageSet) -> np.ndarray:
        return score_baseline(name, ensemble, data, settings, fits, batch_size)

    key = name + "".join(f"-{k[0].upper()}{v:g}" for k, v in settings.items())
    return Method(name, key, scorer, settings)


def ensure_calibration(
    ensemble: LeaveOutEnsemble,
    run_dir: Path,
    validation: ImageSet,
    batch_size: int,
    progress: bool,
) -> None:
    """Calibrate on left-out classes (and save) when the run has no calibration yet."""
    if ensemble.calibration is not None or ensemble.partition is None:
        return
    calibration, rows = calibrate_left_out(
        ensemble, validation, batch_size=batch_size, progress=progress
    )
    save_calibration(run_dir, calibration, rows, "left-out classes (validation split)", "fpr95")
    ensemble.calibration = calibration


def evaluate(
    run_dir: str | Path,
    ood_names: Sequence[str],
    data_root: str | Path | None = None,
    method_name: str = "leaveout",
    temperature: float | None = None,
    epsilon: float | None = None,
    gradient: str | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    ood_positive: bool = False,
    progress: bool = True,
    plots: bool = True,
) -> dict[str, Any]:
    """Score the ID test reporting part and every OOD set; write RUN_DIR/eval/ reports
    (RUN_DIR/eval/<method>/ for the baselines).

    Returns {"method", "settings", "id_accuracy", "convention", "rows": [per-OOD metrics]}.
    """
    run_dir = Path(run_dir)
    started = time.time()
    ensemble = LeaveOutEnsemble.load(run_dir, device)
    splits = load_splits(run_config(run_dir), data_root)
    method = make_method(
        method_name, ensemble, splits, run_dir, temperature, epsilon, gradient, batch_size, progress
    )
    cache = cache_dir(run_dir, ensemble)
    out_dir = run_dir / "eval" if method_name == "leaveout" else run_dir / "eval" / method_name

    id_report = id_test_parts(splits)["report"]
    id_scores = cached_scores(cache, "id-test", method.key, id_report, method.scorer)
    assert id_report.labels is not None
    accuracy = 100.0 * float(np.mean(ensemble.predict(id_report, batch_size) == id_report.labels))

    rows, curves = [], {}
    for name in ood_names:
        report = ood_parts(name, splits, data_root, ensemble.image_size)["report"]
        ood_scores = cached_scores(cache, name, method.key, report, method.scorer)
        metrics = ood_metrics(id_scores, ood_scores, ood_positive)
        rows.append({"ood": name, "n_id": len(id_scores), "n_ood": len(ood_scores), **metrics})
        curves[name] = (id_scores, ood_scores)
    result = {
        "method": method.name,
        "settings": method.settings,
        "id_accuracy": accuracy,
        "convention": "OOD positive" if ood_positive else "ID positive",
        "rows": rows,
        "seconds": time.time() - started,
    }
    write_results(out_dir, result)
    if plots:
        for name, (ids, oods) in curves.items():
            plot_score_histogram(
                out_dir / f"hist_{Path(name).name}.png", ids, oods, name, method.name
            )
        plot_roc(out_dir / "roc.png", curves, method.name)
    return result


RESULT_COLUMNS = ("ood", "n_id", "n_ood", *METRIC_NAMES)


def results_markdown(result: dict[str, Any]) -> str:
    settings = ", ".join(f"{k} = {v}" for k, v in result["settings"].items())
    return (
        f"Method: {result['method']} ({settings}). ID accuracy: {result['id_accuracy']:.2f}%. "
        f"Metrics in percent, {result['convention']} (FPR95 = "
        + (
            "ID rejected when 95% of OOD is rejected"
            if result["convention"] == "OOD positive"
            else "OOD accepted when 95% of ID is accepted"
        )
        + ").\n\n"
        + markdown_table(result["rows"], RESULT_COLUMNS)
        + "\n"
    )


def write_results(out_dir: Path, result: dict[str, Any]) -> None:
    """results.json, results.csv and results.md in `out_dir` (atomic writes)."""
    _io.write_json(out_dir / "results.json", result)
    rows = [
        r | {"method": result["method"], "id_accuracy": result["id_accuracy"]}
        for r in result["rows"]
    ]
    _io.write_text(
        out_dir / "results.csv", csv_table(rows, ("method", *RESULT_COLUMNS, "id_accuracy"))
    )
    _io.write_text(out_dir / "results.md", results_markdown(result))
