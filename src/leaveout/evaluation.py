"""Evaluation on ODIN's protocol, with a split no row order can fool and an interval on every metric.

Every set (the ID test split and each OOD set) is split into a tuning part and a reporting part
(`data.splits.report_split`): by default 1000 tuning images chosen by seeded keys of their pixels,
stratified by class for a labelled set, so a set sorted by class keeps every class in both parts
and a shuffled copy gives the same parts. The indices are saved in the run (`splits/`) and beside
every report (`splits.json`), and reused. Metrics are computed on the reporting parts, each with
a 95% percentile bootstrap interval. Scores are cached in the run directory per (weights, set,
detector settings, image content). `compare` puts two detectors side by side on the same images
with paired bootstrap intervals of their differences.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import files
from .data.imageset import ImageSet
from .data.sets import load_dataset
from .data.splits import Split, report_split
from .detectors import (
    Detector,
    calibrate,
    chosen_method,
    list_detectors,
    load_detector,
    run_sets,
)
from .detectors.base import DEFAULT_CALIBRATION_IMAGES, subsample
from .devices import amp_suffix
from .ensemble import LeaveOutEnsemble
from .errors import ConfigError, LeaveoutWarning, ShapeError
from .metrics import METRIC_NAMES, metric_intervals, ood_metrics, paired_differences
from .reports import csv_table, interval_rows, markdown_table, plot_roc, plot_score_histogram
from .rundir import RunDir

# Below this many OOD images a reporting part gives coarse metrics (FPR95 moves in large steps).
MIN_OOD_IMAGES = 50
ID_SET = "id-test"


@dataclass
class Protocol:
    """How evaluation sets are split and capped."""

    split: str = "seeded"  # "seeded" or "odin-first" (see data.splits.report_split)
    seed: int = 0  # of the seeded split and of the bootstrap
    max_images: int | None = None  # cap every reporting part (a seeded subsample)
    resamples: int = 1000  # bootstrap resamples per interval
    level: float = 0.95  # interval coverage


@dataclass
class EvaluationSets:
    """A run's evaluation sets under a protocol: the ID test split and OOD sets, each split
    once (saved in the run) and remembered for the report's splits.json."""

    run: RunDir
    data_root: str | Path | None
    protocol: Protocol
    sets: dict[str, ImageSet] = field(default_factory=dict)
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sets = self.sets or run_sets(self.run, self.data_root)
        info = self.run.read_info()
        self.image_size, self.resize = info.image_size, self.run.read_config().data.resize

    def load(self, name: str) -> ImageSet:
        """ID_SET (the run's test split), "unseen" (the classes a run held out), a name or a path."""
        if name == ID_SET:
            return self.sets["test"]
        if name == "unseen":
            if "unseen" not in self.sets:
                raise ConfigError(
                    "'unseen' needs a run trained with data.id_classes (some classes held out)"
                )
            return self.sets["unseen"]
        data = load_dataset(name, root=self.data_root, size=self.image_size[0], resize=self.resize)
        if data.image_size != tuple(self.image_size):
            raise ShapeError(
                f"OOD set {name} has {data.image_size} images; the network takes {self.image_size}"
            )
        return data

    def parts(self, name: str) -> dict[str, ImageSet]:
        """{"tune", "report"} of set `name`; the reporting part capped by the protocol."""
        data, label = self.load(name), set_label(name)
        split = self.split_of(data, label)
        parts = split.apply(data)
        parts["report"] = capped(parts["report"], self.protocol.max_images, self.protocol.seed)
        self.splits[label] = {
            "rule": split.rule,
            "images": len(data),
            "fingerprint": data.fingerprint(),
            "tune": split.parts["tune"].tolist(),
            "report": split.parts["report"].tolist(),
        }
        return parts

    def split_of(self, data: ImageSet, label: str) -> Split:
        """The saved split of these images under this rule, or a new one (then saved)."""
        p = self.protocol
        path = self.run.split_path(label, f"{p.split}-{p.seed}", data.fingerprint())
        if path.is_file():
            return Split.load(path)
        split = report_split(data, p.split, p.seed)
        split.save(path)
        return split


def capped(data: ImageSet, max_images: int | None, seed: int = 0) -> ImageSet:
    """A seeded subsample of at most `max_images` images (all of them when None)."""
    if max_images is None or len(data) <= max_images:
        return data
    return data.subset(subsample(np.arange(len(data)), max_images, seed), data.name)


def cached_scores(run: RunDir, detector: Detector, set_name: str, data: ImageSet) -> np.ndarray:
    """detector.score_samples(data), cached per weights, settings and image content."""
    key = f"scores-{set_label(set_name)}-{detector.cache_key()}-{data.fingerprint()}"

    def compute() -> dict[str, torch.Tensor]:
        return {"scores": torch.from_numpy(detector.score_samples(data))}

    return run.cached(detector.ensemble.weights_id, key, compute)["scores"].numpy()


def cached_classes(
    run: RunDir, ensemble: LeaveOutEnsemble, data: ImageSet, batch_size: int, amp: str = "none"
) -> np.ndarray:
    """ensemble.classify(data), cached per weights, test views, precision and image content
    (every method's report on a run states the same accuracy; it is computed once)."""
    views = f"flip{int(ensemble.test_flip)}" + (
        f"-shift{ensemble.test_shift}" if ensemble.test_shift else ""
    )
    key = f"classes-{views}{amp_suffix(amp)}-{data.fingerprint()}"

    def compute() -> dict[str, torch.Tensor]:
        return {"classes": torch.from_numpy(ensemble.classify(data, batch_size, amp))}

    return run.cached(ensemble.weights_id, key, compute)["classes"].numpy()


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


def metrics_row(
    label: str,
    id_scores: np.ndarray,
    ood_scores: np.ndarray,
    protocol: Protocol,
    ood_positive: bool,
) -> dict[str, Any]:
    """The five metrics (fractions) of one OOD set, with their bootstrap intervals."""
    intervals = metric_intervals(
        id_scores, ood_scores, protocol.level, protocol.resamples, protocol.seed, ood_positive
    )
    return {
        "ood": label,
        "n_id": len(id_scores),
        "n_ood": len(ood_scores),
        **ood_metrics(id_scores, ood_scores, ood_positive),
        "intervals": {name: list(bounds) for name, bounds in intervals.items()},
    }


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
    protocol: Protocol | None = None,
    amp: str = "none",
) -> dict[str, Any]:
    """Score the ID test reporting part and every OOD set's; write results.json/csv/md, the
    split indices (splits.json) and plots.

    params: settings that override the calibrated ones (e.g. {"temperature": 10.0}).
    amp: "bf16" runs the networks in bfloat16 autocast (scores still float64; see the detectors).
    Reports go to `out`, else RUN_DIR/eval/<method>/ (a folder named after the overridden
    settings when params are given). max_images caps every reporting part (seeded subsample).
    Metrics in the returned dict are fractions with 95% bootstrap intervals; tables show percent.
    """
    started = time.time()
    run = RunDir(run_dir).require()
    method = chosen_method(run, method)
    protocol = protocol or Protocol(max_images=max_images)
    ensemble = LeaveOutEnsemble.load(run, device)
    evaluation = EvaluationSets(run, data_root, protocol)
    params = dict(params or {})
    detector, chosen = prepare_detector(
        run,
        method,
        ensemble,
        evaluation.sets,
        params,
        protocol.max_images,
        batch_size=batch_size,
        progress=progress,
        amp=amp,
    )
    own_folder = params or amp != "none"  # the calibrated float32 results keep their folder
    folder = Path(out) if out else run.eval_dir(detector.cache_key() if own_folder else method)

    id_report = evaluation.parts(ID_SET)["report"]
    say(progress, f"scoring {len(id_report)} ID test images (reporting part)")
    id_scores = cached_scores(run, detector, ID_SET, id_report)
    assert id_report.labels is not None
    predicted = cached_classes(run, ensemble, id_report, batch_size, amp)
    accuracy = float(np.mean(predicted == id_report.labels))

    rows, curves = [], {}
    for name in ood_names:
        report = evaluation.parts(name)["report"]
        label = set_label(name)
        warn_if_small(name, len(report))
        say(progress, f"scoring {len(report)} images of {label} (reporting part)")
        ood_scores = cached_scores(run, detector, name, report)
        rows.append(metrics_row(label, id_scores, ood_scores, protocol, ood_positive))
        curves[label] = (id_scores, ood_scores)
    result = {
        "method": detector.name,
        "settings": detector.scoring_params(),
        "chosen_on": chosen,
        "id_accuracy": accuracy,
        "image_size": list(ensemble.image_size),
        "convention": "OOD positive" if ood_positive else "ID positive",
        "units": "fractions (tables: percent)",
        "split": protocol.split,
        "intervals": f"{100 * protocol.level:g}% percentile bootstrap intervals "
        f"({protocol.resamples} resamples)",
        "rows": rows,
        "seconds": time.time() - started,
        "folder": str(folder),
    }
    write_results(folder, result)
    files.write_json(folder / "splits.json", evaluation.splits)
    if plots:
        for label, (ids, oods) in curves.items():
            plot_score_histogram(folder / f"hist_{label}.png", ids, oods, label, detector.name)
        plot_roc(folder / "roc.png", curves, detector.name)
    return result


def compare(
    first: tuple[str | Path, str],
    second: tuple[str | Path, str],
    ood_names: Sequence[str],
    data_root: str | Path | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    ood_positive: bool = False,
    progress: bool = True,
    out: str | Path | None = None,
    protocol: Protocol | None = None,
    amp: str = "none",
) -> dict[str, Any]:
    """Two detectors (run, method) on the same images: per OOD set, each one's AUROC and FPR95
    and the difference first - second with a paired bootstrap interval (both resampled with the
    same indices). Both runs must have the same ID test images."""
    protocol = protocol or Protocol()
    runs = [RunDir(first[0]).require(), RunDir(second[0]).require()]
    evaluation = EvaluationSets(runs[0], data_root, protocol)
    other_test = run_sets(runs[1], data_root)["test"]
    if other_test.fingerprint() != evaluation.sets["test"].fingerprint():
        raise ConfigError(f"{runs[0].path} and {runs[1].path} have different ID test images")
    detectors = []
    for run, (_, asked) in zip(runs, (first, second)):
        method = chosen_method(run, asked)
        sets = evaluation.sets if run is runs[0] else run_sets(run, data_root)
        ensemble = LeaveOutEnsemble.load(run, device)
        detector, _ = prepare_detector(
            run,
            method,
            ensemble,
            sets,
            {},
            protocol.max_images,
            batch_size=batch_size,
            progress=progress,
            amp=amp,
        )
        detectors.append((run, detector))
    labels = [f"{run.path.name}:{detector.name}" for run, detector in detectors]
    id_report = evaluation.parts(ID_SET)["report"]
    id_scores = [cached_scores(run, d, ID_SET, id_report) for run, d in detectors]
    rows = []
    for name in ood_names:
        report = evaluation.parts(name)["report"]
        say(progress, f"scoring {len(report)} images of {set_label(name)} with both detectors")
        ood_scores = [cached_scores(run, d, name, report) for run, d in detectors]
        each = [ood_metrics(i, o, ood_positive) for i, o in zip(id_scores, ood_scores)]
        paired = paired_differences(
            (id_scores[0], id_scores[1]),
            (ood_scores[0], ood_scores[1]),
            protocol.level,
            protocol.resamples,
            protocol.seed,
            ood_positive,
        )
        row: dict[str, Any] = {"ood": set_label(name), "n_id": len(id_report), "n_ood": len(report)}
        for metric in ("AUROC", "FPR95"):
            row[metric] = {"first": each[0][metric], "second": each[1][metric], **paired[metric]}
        rows.append(row)
    result = {
        "first": labels[0],
        "second": labels[1],
        "convention": "OOD positive" if ood_positive else "ID positive",
        "intervals": f"{100 * protocol.level:g}% paired percentile bootstrap intervals "
        f"({protocol.resamples} resamples)",
        "rows": rows,
    }
    folder = (
        Path(out)
        if out
        else runs[0].eval_dir(f"compare-{labels[0]}-vs-{labels[1]}".replace(":", "-"))
    )
    result["folder"] = str(folder)
    files.write_json(folder / "compare.json", result)
    files.write_text(folder / "compare.md", compare_markdown(result))
    files.write_json(folder / "splits.json", evaluation.splits)
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


def side(result: dict[str, Any]) -> str:
    height, width = result.get("image_size", (32, 32))
    return f"{height}x{width}"


def results_markdown(result: dict[str, Any]) -> str:
    settings = ", ".join(f"{k} = {v}" for k, v in result["settings"].items())
    fpr95 = (
        "ID rejected when 95% of OOD is rejected"
        if result["convention"] == "OOD positive"
        else "OOD accepted when 95% of ID is accepted"
    )
    return (
        f"Method: {result['method']} ({settings}; chosen on {result['chosen_on']}). "
        f"ID accuracy: {100 * result['id_accuracy']:.2f}%. Images: {side(result)}. Metrics in percent, in brackets their "
        f"{result['intervals']}; {result['convention']} (FPR95 = {fpr95}); "
        f"{result['split']} tuning/reporting split.\n\n"
        + markdown_table(interval_rows(result["rows"], METRIC_NAMES), RESULT_COLUMNS)
        + "\n"
    )


def write_results(folder: Path, result: dict[str, Any]) -> None:
    """results.json (fractions), results.csv and results.md (percent) in `folder`, atomically."""
    files.write_json(folder / "results.json", result)
    rows = []
    for r in result["rows"]:
        row = {"method": result["method"], "ood": r["ood"], "n_id": r["n_id"], "n_ood": r["n_ood"]}
        for name in METRIC_NAMES:
            low, high = r["intervals"][name]
            row |= {name: 100 * r[name], f"{name} low": 100 * low, f"{name} high": 100 * high}
        rows.append(row | {"id_accuracy": 100 * result["id_accuracy"]})
    columns = ["method", "ood", "n_id", "n_ood"]
    columns += [c for name in METRIC_NAMES for c in (name, f"{name} low", f"{name} high")]
    files.write_text(folder / "results.csv", csv_table(rows, [*columns, "id_accuracy"]))
    files.write_text(folder / "results.md", results_markdown(result))


def compare_markdown(result: dict[str, Any]) -> str:
    """One row per OOD set: each detector's AUROC and FPR95 and the paired difference."""
    rows = []
    for r in result["rows"]:
        row: dict[str, Any] = {"ood": r["ood"]}
        for metric in ("AUROC", "FPR95"):
            m = r[metric]
            row[f"{metric} first"] = f"{100 * m['first']:.2f}"
            row[f"{metric} second"] = f"{100 * m['second']:.2f}"
            row[f"{metric} first - second"] = (
                f"{100 * m['difference']:+.2f} ({100 * m['low']:+.2f} to {100 * m['high']:+.2f})"
            )
        rows.append(row)
    columns = ["ood"] + [
        f"{m} {part}" for m in ("AUROC", "FPR95") for part in ("first", "second", "first - second")
    ]
    return (
        f"First: {result['first']}; second: {result['second']}. Percent, {result['convention']}; "
        f"differences with {result['intervals']} (an interval that excludes 0 is a "
        "difference the resampling does not explain away).\n\n"
        + markdown_table(rows, columns)
        + "\n"
    )
