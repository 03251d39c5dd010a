"""Flip test-time augmentation for the OOD score: each image's score against the mean of the scores
of the image and its mirror image, at the calibrated settings, for the ensemble and the baselines.

Rows: the ensemble on its own left-out classes (each member's kept vs left-out validation images
scored by that member alone, averaged over members, as `leaveout calibrate` chooses), then every
method on the reporting parts of the CIFAR-10 test split and the TinyImageNet sets. Both views go
through the same calibrated T and eps (chosen without the flip) and the same bf16 networks.

    python benchmarks/score_flip.py [--runs runs] [--data-root ../shared/data] [--max-images 1000]
Reads the runs of `benchmarks/reproduce_cpu.py` (seed 0): RUNS/cpu-cifar10 and
RUNS/cpu-cifar10-standard, both calibrated.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from leaveout.detectors import Detector, load_detector
from leaveout.detectors.base import subsample, validation_metrics
from leaveout.evaluation import ID_SET, EvaluationSets, Protocol
from leaveout.reports import markdown_table
from leaveout.rundir import RunDir

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
OOD = ("tiny_imagenet_crop", "tiny_imagenet_resize")
BASELINES = ("msp", "odin", "energy")


def mirrored(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images[:, :, ::-1])  # (N, H, W, C): W reversed


def both_views(detector: Detector, images: np.ndarray) -> dict[str, np.ndarray]:
    """{"plain", "flip-mean"} scores at the detector's fitted settings."""
    plain, flipped = detector.score_samples(images), detector.score_samples(mirrored(images))
    return {"plain": plain, "flip-mean": (plain + flipped) / 2}


def percent(metrics: list[dict[str, float]], key: str) -> str:
    return f"{100 * np.mean([m[key] for m in metrics]):.2f}"


def left_out_rows(
    detector: Detector, sets: EvaluationSets, max_images: int
) -> list[dict[str, str]]:
    """The ensemble's left-out validation, per member at the calibrated point, averaged; each side
    subsampled as `leaveout calibrate --max-images` does."""
    val, partition = sets.sets["val"], detector.ensemble.partition
    per_view: dict[str, list[dict[str, float]]] = {"plain": [], "flip-mean": []}
    for m in range(detector.ensemble.k):
        view = detector.member_view(m)
        out = np.isin(val.labels, partition.left_out(m))
        kept, left = (
            both_views(view, val.images[subsample(np.flatnonzero(mask), max_images, m)])
            for mask in (~out, out)
        )
        for name in per_view:
            per_view[name].append(validation_metrics(kept[name], left[name]))
    return [
        {
            "method": "leaveout",
            "set": "left-out validation classes",
            "score": name,
            "FPR95": percent(rows, "FPR95"),
            "AUROC": percent(rows, "AUROC"),
        }
        for name, rows in per_view.items()
    ]


def reporting_rows(method: str, detector: Detector, parts: dict[str, np.ndarray]) -> list[dict]:
    scores = {name: both_views(detector, images) for name, images in parts.items()}
    rows = []
    for ood in OOD:
        for view in ("plain", "flip-mean"):
            metrics = validation_metrics(scores[ID_SET][view], scores[ood][view])
            rows.append(
                {
                    "method": method,
                    "set": ood,
                    "score": view,
                    "FPR95": percent([metrics], "FPR95"),
                    "AUROC": percent([metrics], "AUROC"),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--data-root", default=str(SHARED))
    parser.add_argument("--max-images", type=int, default=1000, help="as the runs were calibrated")
    args = parser.parse_args()
    ours_run = RunDir(args.runs / "cpu-cifar10").require()
    standard_run = RunDir(args.runs / "cpu-cifar10-standard").require()
    sets = EvaluationSets(ours_run, args.data_root, Protocol())
    parts = {name: sets.parts(name)["report"].images for name in (ID_SET, *OOD)}
    started = time.time()
    options = {"amp": "bf16", "batch_size": 256}
    ours = load_detector(ours_run, "leaveout", sets=sets.sets, **options)
    rows = left_out_rows(ours, sets, args.max_images) + reporting_rows("leaveout", ours, parts)
    standard_sets = EvaluationSets(standard_run, args.data_root, Protocol()).sets
    for method in BASELINES:
        baseline = load_detector(standard_run, method, sets=standard_sets, **options)
        rows += reporting_rows(method, baseline, parts)
    print(markdown_table(rows, list(rows[0])))
    print(f"\n{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
