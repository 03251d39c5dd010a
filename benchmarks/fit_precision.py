"""Fitting the feature detectors' training statistics in float32 and in bf16, same process.

Each fit streams every training image of the run's split through every member (its kept
classes), as `leaveout calibrate` and `evaluate` do for Mahalanobis and KNN.

    python benchmarks/fit_precision.py [--run runs/cpu-cifar10] [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from leaveout import create_detector
from leaveout.detectors import run_sets
from leaveout.ensemble import LeaveOutEnsemble
from leaveout.reports import markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/cpu-cifar10"))
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--detectors", default="mahalanobis,knn")
    args = parser.parse_args()
    ensemble = LeaveOutEnsemble.load(args.run)
    train = run_sets(args.run, args.data_root)["train"]
    rows = []
    for name in args.detectors.split(","):
        seconds = {}
        for amp in ("none", "bf16"):
            detector = create_detector(name, ensemble, amp=amp, batch_size=256, progress=False)
            started = time.perf_counter()
            detector.fit_statistics(train)
            seconds[amp] = time.perf_counter() - started
        rows.append(
            {
                "detector": name,
                "fit seconds, float32": f"{seconds['none']:.0f}",
                "fit seconds, bf16": f"{seconds['bf16']:.0f}",
                "float32 / bf16": f"{seconds['none'] / seconds['bf16']:.1f}",
            }
        )
    print(f"{args.run}: {ensemble.k} members, {len(train)} training images\n")
    print(markdown_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
