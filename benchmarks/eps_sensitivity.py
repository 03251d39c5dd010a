"""How the input step eps moves the left-out criterion and the test metrics, at the calibrated T.

A diagnostic, never a way to choose: the left-out columns are those `leaveout calibrate` saved
(calibration/leaveout.json: the members' mean FPR95 on their left-out classes and the share of
bootstrap resamples each point wins); the test columns score the reporting parts of the OOD sets
with the ensemble at every eps of the grid (paper's gradient, bf16 autocast as in
`benchmarks/reproduce_cpu.py`, scores in float64).

    python benchmarks/eps_sensitivity.py [--run runs/cpu-cifar10] [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from leaveout import create_detector
from leaveout.detectors import run_sets
from leaveout.devices import keep_freed_memory
from leaveout.ensemble import LeaveOutEnsemble
from leaveout.evaluation import ID_SET, EvaluationSets, Protocol
from leaveout.metrics import ood_metrics
from leaveout.reports import markdown_table
from leaveout.rundir import RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/cpu-cifar10"))
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--ood", nargs="+", default=["tiny_imagenet_crop", "tiny_imagenet_resize"])
    parser.add_argument("--amp", default="bf16")
    args = parser.parse_args()
    keep_freed_memory()  # as the command line does
    run = RunDir(args.run).require()
    record = run.read_calibration("leaveout")
    if record is None:
        raise SystemExit(f"{run.path} has no leaveout calibration: run `leaveout calibrate` first")
    temperature = record["params"]["temperature"]
    rows = [r for r in record["grid"] if r["temperature"] == temperature]
    points = [{"temperature": temperature, "epsilon": r["epsilon"]} for r in rows]
    ensemble = LeaveOutEnsemble.load(run)
    detector = create_detector("leaveout", ensemble, amp=args.amp, progress=False)
    sets = EvaluationSets(run, args.data_root, Protocol(), run_sets(run, args.data_root))
    id_scores = detector.score_grid(sets.parts(ID_SET)["report"], points)
    table = [
        {
            "eps": f"{r['epsilon']:g}"
            + (" (chosen)" if r["epsilon"] == record["params"]["epsilon"] else ""),
            "left-out FPR95": f"{100 * r['FPR95']:.2f}",
            "left-out AUROC": f"{100 * r['AUROC']:.2f}",
            "chosen_share": f"{100 * r.get('chosen_share', float('nan')):.0f}%",
        }
        for r in rows
    ]
    for name in args.ood:
        ood_scores = detector.score_grid(sets.parts(name)["report"], points)
        for row, i, o in zip(table, id_scores, ood_scores):
            metrics = ood_metrics(i, o)
            row[f"{name} FPR95 / AUROC"] = (
                f"{100 * metrics['FPR95']:.2f} / {100 * metrics['AUROC']:.2f}"
            )
    print(
        f"{run.path}: T = {temperature:g} (calibrated), every eps of the grid, {args.amp} passes\n"
    )
    print(markdown_table(table, list(table[0])))


if __name__ == "__main__":
    main()
