"""Which ingredient carries the gain? The cpu-cifar10 setting with one ingredient changed at a time.

Variants (every one calibrated on its own members' left-out classes, never on a test OOD set):
- the full method: trained with beta = 0.2, member score max-softmax minus entropy, input step;
- no input step: the same ensemble, eps fixed at 0 (T still calibrated);
- member score max-softmax only: the same ensemble, T and eps calibrated for that score;
- beta = 0: an ensemble trained without the margin entropy loss (same K, network and budget);
- K = 3 (with --k3): three members, each leaving out three or four classes.
Training runs are reused when their directories exist with the same settings.

    python benchmarks/ablation.py --data-root ../shared/data [--runs runs] [--k3] [--out docs/ablation.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from leaveout import training
from leaveout.calibration import PAPER_EPSILONS, PAPER_TEMPERATURES, calibrate_left_out
from leaveout.config import resolve
from leaveout.evaluation import cache_dir, cached_scores, id_test_parts, ood_parts, run_config
from leaveout.metrics import ood_metrics
from leaveout.reports import markdown_table, replace_section
from leaveout.scoring import LeaveOutEnsemble

OOD = ("tiny_imagenet_crop", "tiny_imagenet_resize", "uniform", "gaussian")


def variant_scores(
    run_dir: Path, data_root: str, epsilons: tuple[float, ...], score_kind: str
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Calibrate (T, eps) on left-out classes for this variant, then metrics per OOD set."""
    ensemble = LeaveOutEnsemble.load(run_dir)
    splits = training.load_splits(run_config(run_dir), data_root)
    default = score_kind == "msp-entropy" and epsilons == PAPER_EPSILONS
    if default and ensemble.calibration is not None:  # the run's own calibration: same search
        cal = ensemble.calibration
    else:
        cal, _ = calibrate_left_out(
            ensemble,
            splits["val"],
            PAPER_TEMPERATURES,
            epsilons,
            score_kind=score_kind,
            progress=True,
        )
    t, e = cal.temperature, cal.epsilon
    # the default variant shares `leaveout evaluate`'s cache key, so its scores are reused
    key = (
        f"leaveout-entropy-T{t:g}-eps{e:g}"
        if score_kind == "msp-entropy"
        else f"ablation-{score_kind}-T{t:g}-eps{e:g}"
    )

    def scorer(data):
        grid = ensemble.member_scores_grid(data, [t], [e], score_kind=score_kind, progress=True)
        return grid[0, 0].sum(axis=0)

    cache = cache_dir(run_dir, ensemble)
    id_scores = cached_scores(cache, "id-test", key, id_test_parts(splits)["report"], scorer)
    metrics = {}
    for name in OOD:
        report = ood_parts(name, splits, data_root, ensemble.image_size)["report"]
        metrics[name] = ood_metrics(id_scores, cached_scores(cache, name, key, report, scorer))
    return metrics, {"T": t, "eps": e}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, default=Path("docs/ablation.md"))
    parser.add_argument("--k3", action="store_true", help="also train and score K = 3")
    args = parser.parse_args()
    started = time.time()

    runs = {
        "full": (args.runs / "cpu-cifar10", []),
        "beta0": (args.runs / "ablation-beta0", ["train.beta=0.0"]),
    }
    if args.k3:
        runs["k3"] = (args.runs / "ablation-k3", ["train.k=3"])
    for run_dir, overrides in runs.values():
        training.train(resolve("cpu-cifar10", overrides=overrides), run_dir, args.data_root, "cpu")

    full_dir = runs["full"][0]
    variants = [
        (
            "full method (beta 0.2, K 5, max-softmax - entropy, input step)",
            full_dir,
            PAPER_EPSILONS,
            "msp-entropy",
        ),
        ("no input step (eps = 0)", full_dir, (0.0,), "msp-entropy"),
        ("member score max-softmax only", full_dir, PAPER_EPSILONS, "msp"),
        ("trained with beta = 0 (no margin loss)", runs["beta0"][0], PAPER_EPSILONS, "msp-entropy"),
    ]
    if args.k3:
        variants.append(("K = 3 members", runs["k3"][0], PAPER_EPSILONS, "msp-entropy"))

    rows = []
    for label, run_dir, epsilons, kind in variants:
        print(f"\n== {label}", flush=True)
        metrics, chosen = variant_scores(run_dir, args.data_root, epsilons, kind)
        row = {"variant": label, "T, eps": f"{chosen['T']:g}, {chosen['eps']:g}"}
        for name in OOD:
            row[name] = f"{metrics[name]['FPR95']:.1f} / {metrics[name]['AUROC']:.1f}"
        row["mean AUROC"] = f"{np.mean([m['AUROC'] for m in metrics.values()]):.1f}"
        rows.append(row)
    text = "\n".join(
        [
            "# Ablation on the cpu-cifar10 setting",
            "",
            f"Produced by `python benchmarks/ablation.py --data-root {args.data_root}"
            f"{' --k3' if args.k3 else ''}` in {(time.time() - started) / 60:.0f} minutes "
            f"({time.strftime('%Y-%m-%d')}). Cells: FPR95 / AUROC in percent (ID positive) on "
            "ODIN's reporting parts; T and eps chosen per variant on its own left-out classes.",
            "",
            markdown_table(rows, ["variant", "T, eps", *OOD, "mean AUROC"]),
            "",
        ]
    )
    args.out.write_text(text)
    results = Path("docs/results.md")
    if results.is_file():  # the ablation is also a section of the results page
        section = "## Ablation\n\n" + text.split("\n", 2)[2]
        results.write_text(replace_section(results.read_text(), "ablation", section))
    print(text)


if __name__ == "__main__":
    main()
