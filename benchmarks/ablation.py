"""Which ingredient carries the gain? The cpu-cifar10 setting with one ingredient changed at a time.

Variants (every one calibrated on its own members' left-out classes, never on a test OOD set):
- the full method as the preset trains it, with the member score max-softmax minus entropy and
  the input step;
- no input step: the same ensemble, eps fixed at 0 (T still calibrated);
- member score max-softmax only: the same ensemble, T and eps calibrated for that score;
- trained again with one setting changed (same network, epochs and data): beta = 0 (no margin
  entropy loss); margin m = 1.5 (the hinge never switches off); K = 3; the left-out batch twice
  the preset's; label smoothing 0.2 (the anchor's; the preset has none); the whitening bias
  learning in the first 2 epochs only (airbench's economy, now the preset's) or in every epoch;
  airbench's lookahead; the first convolution learned from a random start instead of set from
  the data's whitening and frozen.
Training runs are reused when their directories exist with the same settings (the full method's
is `benchmarks/reproduce_cpu.py`'s).

    python benchmarks/ablation.py --data-root ../shared/data [--runs runs] [--out docs/ablation.md]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from leaveout import files, training
from leaveout.config import resolve
from leaveout.detectors import (
    PAPER_EPSILONS,
    PAPER_TEMPERATURES,
    Detector,
    create_detector,
    run_sets,
)
from leaveout.detectors.base import chosen_row
from leaveout.devices import keep_freed_memory
from leaveout.ensemble import LeaveOutEnsemble
from leaveout.evaluation import ID_SET, EvaluationSets, Protocol, cached_classes, cached_scores
from leaveout.metrics import ood_metrics
from leaveout.reports import markdown_table, read_section, replace_section
from leaveout.rundir import RunDir

OOD = ("tiny_imagenet_crop", "tiny_imagenet_resize", "uniform", "gaussian")


def saved_calibration_fits(run: RunDir, detector: Detector) -> dict | None:
    """The run's calibration/leaveout.json when it is the search `detector` would do (same
    weights, score settings, criterion and grid), else None."""
    record = run.read_calibration(detector.name)
    if record is None or record.get("weights") != detector.ensemble.weights_id:
        return None
    settings = {key: getattr(detector, key) for key in detector.settings}
    grid = {(row.get("temperature"), row.get("epsilon")) for row in record.get("grid", [])}
    searched = {(p["temperature"], p["epsilon"]) for p in detector.grid_points()}
    same = (
        record.get("settings") == settings
        and record.get("criterion") == detector.criterion
        and grid == searched
    )
    return record if same else None


def variant_scores(
    run_dir: Path,
    data_root: str,
    epsilons: tuple[float, ...],
    score_kind: str,
    oods: Sequence[str] = OOD,
    device: str = "cpu",
    amp: str = "bf16",
    calibration_images: int = 1000,
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Calibrate (T, eps) on left-out classes for this variant, then metrics (fractions) per
    OOD set, and the chosen point's: T, eps, its left-out validation FPR95 and AUROC (the mean
    over members) and the ensemble's ID accuracy on the test reporting part."""
    run = RunDir(run_dir).require()
    ensemble = LeaveOutEnsemble.load(run, device)
    sets = run_sets(run, data_root)
    detector = create_detector(
        "leaveout",
        ensemble,
        search_space={"temperature": PAPER_TEMPERATURES, "epsilon": epsilons},
        member_score=score_kind,
        progress=True,
        amp=amp,
    )
    default = score_kind == "msp-entropy" and tuple(epsilons) == PAPER_EPSILONS
    record = saved_calibration_fits(run, detector) if default else None
    if record is not None:  # the run's own calibration: the same search
        detector.apply_calibration(record)
    else:
        detector.fit_left_out(sets["val"], max_images=calibration_images)
    params = detector.hyperparameters()
    validation = chosen_row(detector.calibration_record()["grid"], params) or {}
    # scores are cached per weights, settings and images: the default variant shares
    # `leaveout evaluate`'s cache entries, so its scores are reused
    evaluation = EvaluationSets(run, data_root, Protocol(), sets)
    id_report = evaluation.parts(ID_SET)["report"]
    id_scores = cached_scores(run, detector, ID_SET, id_report)
    batch_size = run.read_config().train.eval_batch_size
    predicted = cached_classes(run, ensemble, id_report, batch_size, amp)
    metrics = {}
    for name in oods:
        report = evaluation.parts(name)["report"]
        metrics[name] = ood_metrics(id_scores, cached_scores(run, detector, name, report))
    chosen = {
        "T": params["temperature"],
        "eps": params["epsilon"],
        "val FPR95": validation.get("FPR95", float("nan")),
        "val AUROC": validation.get("AUROC", float("nan")),
        "accuracy": float(np.mean(predicted == id_report.labels)),
    }
    return metrics, chosen


TRAINED = {  # run name: (label, settings over the preset)
    "full": ("full method ({recipe})", []),
    "beta0": ("trained with beta = 0 (no margin loss)", ["train.beta=0.0"]),
    "margin15": ("margin m = 1.5 (the hinge never switches off)", ["train.margin=1.5"]),
    "k3": ("K = 3 members (each leaves out 3 or 4 classes)", ["train.k=3"]),
    "ood-batch": (
        "left-out batch {twice} per {id_batch} ID (twice the preset's)",
        ["train.ood_batch_size={twice}"],
    ),
    "smoothing": ("label smoothing 0.2 (the anchor's)", ["train.label_smoothing=0.2"]),
    "whiten-bias-2": (
        "whitening bias learning in the first 2 epochs only",
        ["train.whiten_bias_epochs=2"],
    ),
    "whiten-bias-all": (
        "whitening bias learning in every epoch",
        ["train.whiten_bias_epochs=-1"],
    ),
    "lookahead": ("airbench's lookahead (decay 0.95, every 5 steps)", ["train.lookahead=0.95"]),
    "learned-stem": (
        "first convolution learned from a random start, no whitening",
        ['model.name="airnet_learned_stem"'],
    ),
}


def recipe(preset: str) -> str:
    t = resolve(preset).train
    return (
        f"m {t.margin:g}, beta {t.beta:g}, K {t.k}, left-out batch {t.ood_batch_size} per {t.batch_size} ID, "
        f"label smoothing {t.label_smoothing:g}, max-softmax - entropy, input step"
    )


def training_minutes(run_dir: Path) -> float:
    run = RunDir(run_dir)
    return sum(run.read_state(m)["seconds"] for m in range(run.read_info().members)) / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, default=Path("docs/ablation.md"))
    parser.add_argument("--preset", default="cpu-cifar10")
    parser.add_argument(
        "--only",
        default=",".join(name for name in TRAINED if name != "full"),
        help="the retrained variants to include, comma-separated (default: all)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="members trained side by side (as reproduce_cpu)"
    )
    parser.add_argument("--amp", default="bf16", choices=("none", "bf16"))
    parser.add_argument("--calibration-images", type=int, default=1000)
    args = parser.parse_args()
    keep_freed_memory()  # as the command line does
    included = {"full", *args.only.split(",")}
    unknown = included - set(TRAINED)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {', '.join(TRAINED)}")
    started = time.time()
    command = f"python benchmarks/ablation.py --data-root {args.data_root}"
    if args.only != parser.get_default("only"):
        command += f" --only {args.only}"

    train = resolve(args.preset).train
    names = {"id_batch": train.batch_size, "twice": 2 * train.ood_batch_size}
    runs, settings = {}, []
    for name, (label, overrides) in TRAINED.items():
        if name not in included:
            continue
        overrides = [o.format(**names) for o in overrides]
        run_dir = args.runs / (args.preset if name == "full" else f"ablation-{name}")
        runs[name] = (label.format(recipe=recipe(args.preset), **names), run_dir)
        settings.append((resolve(args.preset, overrides=overrides), run_dir))
    print(
        f"\n== train {', '.join(str(d) for _, d in settings)}, {args.workers} at a time", flush=True
    )
    training.train_runs(settings, args.data_root, "cpu", args.workers)

    full_label, full_dir = runs.pop("full")
    variants = [
        (full_label, full_dir, PAPER_EPSILONS, "msp-entropy"),
        ("no input step (eps = 0)", full_dir, (0.0,), "msp-entropy"),
        ("member score max-softmax only", full_dir, PAPER_EPSILONS, "msp"),
        *[(label, run_dir, PAPER_EPSILONS, "msp-entropy") for label, run_dir in runs.values()],
    ]

    rows = []
    for label, run_dir, epsilons, kind in variants:
        print(f"\n== {label}", flush=True)
        metrics, chosen = variant_scores(
            run_dir,
            args.data_root,
            epsilons,
            kind,
            amp=args.amp,
            calibration_images=args.calibration_images,
        )
        row = {
            "variant": label,
            "T, eps": f"{chosen['T']:g}, {chosen['eps']:g}",
            "left-out validation": f"{100 * chosen['val FPR95']:.1f} / {100 * chosen['val AUROC']:.1f}",
            "ID accuracy": f"{100 * chosen['accuracy']:.2f}",
        }
        for name in OOD:
            row[name] = f"{100 * metrics[name]['FPR95']:.1f} / {100 * metrics[name]['AUROC']:.1f}"
        natural = [metrics[name]["AUROC"] for name in OOD if name.startswith("tiny")]
        row["mean AUROC, TinyImageNet"] = f"{100 * np.mean(natural):.1f}"
        row["training minutes"] = f"{training_minutes(run_dir):.1f}"
        rows.append(row)
    text = "\n".join(
        [
            f"# Ablation on the {args.preset} setting",
            "",
            f"Produced by `{command}` in "
            f"{(time.time() - started) / 60:.0f} minutes, reusing the run of "
            "`benchmarks/reproduce_cpu.py` "
            f"({time.strftime('%Y-%m-%d')}). Cells: FPR95 / AUROC in percent (ID positive) on "
            "the reporting parts of the seeded, class-stratified split (1000 tuning images per "
            "set); T and eps chosen per variant on its own left-out classes (at most "
            f"{args.calibration_images} images per side and member; the left-out validation "
            "column gives the chosen point's FPR95 / AUROC there, the mean over members), ID "
            "accuracy on the CIFAR-10 reporting part with the preset's test views, networks in "
            f"{'bfloat16 autocast' if args.amp == 'bf16' else 'float32'}, scores in float64. "
            "Training minutes: the members' own training times added up, on this 2-core "
            f"machine, {args.workers} trained at a time (`--workers`).",
            "",
            markdown_table(
                rows,
                [
                    "variant",
                    "T, eps",
                    "left-out validation",
                    "ID accuracy",
                    *OOD,
                    "mean AUROC, TinyImageNet",
                    "training minutes",
                ],
            ),
            "",
        ]
    )
    kept = read_section(args.out.read_text(), "ablation-notes") if args.out.is_file() else None
    if kept:  # the reading of the table, by hand
        text = replace_section(text, "ablation-notes", kept)
    files.write_text(args.out, text)
    results = Path("docs/results.md")
    if results.is_file():  # the ablation is also a section of the results page
        section = "## Ablation\n\n" + text.split("\n", 2)[2]
        files.write_text(results, replace_section(results.read_text(), "ablation", section))
    print(text)


if __name__ == "__main__":
    main()
