"""Every registered detector on the cpu-cifar10 standard classifier and on its leave-out ensemble,
on every OOD set under the data root, and the detector chosen on the left-out classes.

Stages (what exists for the current weights is reused):
1. the two runs of benchmarks/reproduce_cpu.py (trained first when missing);
2. `leaveout calibrate ENS --select auto --also STD`: every detector calibrated on the ensemble's
   left-out pairs (no OOD data), the best kept by FPR95; every detector's chosen settings are
   carried to the standard classifier (which has no left-out classes);
3. costs: each detector's fit on the training images (statistics recomputed) and its scoring
   rate on 1,000 TinyImageNet-crop images at its chosen settings, float32 and bf16;
4. `leaveout evaluate` of every detector on both runs (reporting parts, 95% bootstrap intervals);
5. the tables: a "detectors" section of docs/results.md, and the costs in docs/benchmarks.md.

    python benchmarks/detectors.py --data-root ../shared/data [--runs runs] [--amp bf16]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from reproduce_cpu import PRESET, present_ood_sets, run_dirs, with_interval

from leaveout import files, training
from leaveout.config import resolve
from leaveout.data import load_dataset
from leaveout.detectors import (
    AUTO,
    carry_selection,
    list_detectors,
    load_detector,
    run_sets,
    select_detector,
    transfer_calibration,
)
from leaveout.ensemble import LeaveOutEnsemble
from leaveout.evaluation import evaluate
from leaveout.reports import format_number, markdown_table, replace_section
from leaveout.rundir import RunDir

NATURAL = ("tiny_imagenet_crop", "tiny_imagenet_resize", "lsun_crop", "lsun_resize", "isun")
COST_IMAGES = 1000


def train_runs(runs: Path, data_root: str) -> tuple[Path, Path]:
    ens_dir, std_dir = run_dirs(runs, 0)
    training.train(resolve(PRESET), ens_dir, data_root, "cpu")  # skips what is done
    training.train(resolve(PRESET, overrides=['train.mode="standard"']), std_dir, data_root, "cpu")
    return ens_dir, std_dir


def costs(ens_dir: Path, data_root: str, batch_size: int) -> list[dict[str, str]]:
    """Fit seconds (recomputed, not the cached statistics) and scoring images/s of every
    detector on the ensemble, at its calibrated settings."""
    run = RunDir(ens_dir).require()
    ensemble = LeaveOutEnsemble.load(run, "cpu")
    train = run_sets(run, data_root)["train"]
    images = load_dataset("tiny_imagenet_crop", root=data_root).images[:COST_IMAGES]
    rows = []
    for name in list_detectors():
        detector = load_detector(
            run, name, ensemble=ensemble, data_root=data_root, batch_size=batch_size, amp="bf16"
        )
        row = {"detector": name, "settings": settings_text(detector.hyperparameters())}
        if detector.needs_training_data:
            started = time.perf_counter()
            detector.fit_statistics(train)
            row["fit seconds (bf16)"] = f"{time.perf_counter() - started:.0f}"
            row["statistics (MB)"] = f"{statistics_bytes(detector) / 2**20:.1f}"
        for amp in ("none", "bf16"):
            detector.amp = amp
            started = time.perf_counter()
            detector.score_samples(images)
            rate = len(images) / (time.perf_counter() - started)
            row["images/s, float32" if amp == "none" else "images/s, bf16"] = f"{rate:.0f}"
        print(row, flush=True)
        rows.append(row)
    return rows


def settings_text(settings: dict) -> str:
    return ", ".join(f"{key} = {format_number(value)}" for key, value in settings.items()) or "-"


def statistics_bytes(detector) -> int:
    return sum(t.numel() * t.element_size() for t in detector.state_dict().values())


def select_and_carry(
    ens_dir: Path, std_dir: Path, data_root: str, max_images: int, options: dict
) -> dict:
    """`calibrate --select auto --also std`, and every other detector's settings carried too
    (a selection already made for both runs' current weights is reused)."""
    run, std = RunDir(ens_dir).require(), RunDir(std_dir).require()
    done = run.current_calibration(AUTO)
    if done is not None and std.current_calibration(AUTO) is not None:
        return done
    ensemble = LeaveOutEnsemble.load(run, "cpu")
    sets = run_sets(run, data_root)
    record = select_detector(run, ensemble, sets, max_images=max_images, **options)
    for row in record["candidates"]:
        print({k: v for k, v in row.items() if k != "settings"}, flush=True)
        if "error" in row or row["detector"] == "leaveout":
            continue
        detector = load_detector(run, row["detector"], ensemble=ensemble, sets=sets, **options)
        transfer_calibration(detector, std, "cpu", data_root)
    carry_selection(run, std, "cpu", data_root, **options)
    return record


def evaluate_all(
    ens_dir: Path, std_dir: Path, oods: list[str], data_root: str, amp: str
) -> dict[tuple[str, str], dict]:
    """evaluate() of every detector on both networks: {(network, detector): result}."""
    results = {}
    for network, run_dir in (("ensemble", ens_dir), ("standard", std_dir)):
        for name in list_detectors():
            if network == "standard" and name == "leaveout":
                continue
            results[network, name] = evaluate(
                run_dir, oods, data_root, method=name, amp=amp, progress=False, plots=False
            )
            print(f"{network} {name}: {results[network, name]['seconds']:.0f} s", flush=True)
    return results


def mean_auroc(result: dict) -> float | None:
    values = [r["AUROC"] for r in result["rows"] if r["ood"] in natural_labels()]
    return 100 * float(np.mean(values)) if values else None


def natural_labels() -> set[str]:
    from leaveout.evaluation import set_label

    return {set_label(name) for name in NATURAL}


def summary_rows(results: dict, record: dict) -> list[dict[str, str]]:
    left_out = {row["detector"]: row for row in record["candidates"] if "error" not in row}
    rows = []
    for (network, name), result in sorted(
        results.items(), key=lambda item: -(mean_auroc(item[1]) or 0)
    ):
        chosen = " (auto)" if name == record["chosen"] else ""
        row = left_out.get(name, {})
        rows.append(
            {
                "detector": name + chosen,
                "network": network,
                "left-out FPR95 / AUROC": f"{100 * row['FPR95']:.2f} / {100 * row['AUROC']:.2f}"
                if row
                else "-",
                "mean AUROC, natural sets": f"{mean_auroc(result):.2f}",
                "ID accuracy": f"{100 * result['id_accuracy']:.2f}",
            }
        )
    return rows


def set_tables(results: dict, record: dict) -> list[str]:
    labels = [row["ood"] for row in next(iter(results.values()))["rows"]]
    lines = []
    for index, label in enumerate(labels):
        rows = [
            {
                "detector": name + (" (auto)" if name == record["chosen"] else ""),
                "network": network,
                "FPR95": with_interval(result["rows"][index], "FPR95"),
                "AUROC": with_interval(result["rows"][index], "AUROC"),
                "AUPR-In": with_interval(result["rows"][index], "AUPR-In"),
            }
            for (network, name), result in results.items()
        ]
        lines += [f"### {label}", "", markdown_table(rows, list(rows[0])), ""]
    return lines


def goal_sentence(results: dict, record: dict) -> str:
    chosen = record["chosen"]
    auto = mean_auroc(results["ensemble", chosen])
    best_key = max(results, key=lambda key: mean_auroc(results[key]) or 0)
    best = mean_auroc(results[best_key])
    verdict = "matches or beats" if auto >= best else "falls short of"
    return (
        f"The left-out classes chose **{chosen}** (by FPR95 on the left-out pairs). On the "
        f"ensemble its mean AUROC over the natural-image sets is {auto:.2f}; the best fixed "
        f"method is {best_key[1]} on the {best_key[0]} network at {best:.2f}, so the auto choice "
        f"{verdict} it ({auto - best:+.2f} points)."
    )


def write_section(path: Path, body: str, name: str) -> None:
    text = path.read_text() if path.is_file() else ""
    files.write_text(path, replace_section(text, name, body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--amp", default="bf16", choices=("none", "bf16"))
    parser.add_argument("--calibration-images", type=int, default=1000)
    parser.add_argument("--skip-costs", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.time()
    ens_dir, std_dir = train_runs(args.runs, args.data_root)
    options = {"amp": args.amp, "batch_size": 256, "progress": False}
    record = select_and_carry(ens_dir, std_dir, args.data_root, args.calibration_images, options)
    cost_rows = [] if args.skip_costs else costs(ens_dir, args.data_root, 256)
    oods = present_ood_sets(Path(args.data_root))
    results = evaluate_all(ens_dir, std_dir, oods, args.data_root, args.amp)
    minutes = (time.time() - started) / 60
    command = f"python benchmarks/detectors.py --data-root {args.data_root}"
    summary = summary_rows(results, record)
    body = "\n".join(
        [
            "## Every detector, and the one chosen on the left-out classes",
            "",
            f"`{command}` ({minutes:.0f} minutes of this invocation on this 2-core machine, "
            f"{time.strftime('%Y-%m-%d')}). Both networks are those of the tables above. Every "
            "detector's settings were chosen on the ensemble's left-out classes (at most "
            f"{args.calibration_images} validation images per side and member, "
            "`leaveout calibrate --select auto`), and the same settings were applied to the "
            "standard classifier. On the ensemble every detector is the member-level variant: "
            "each member scores with its own logits or features, and the K scores are summed. "
            f"Networks in {'bfloat16 autocast' if args.amp == 'bf16' else 'float32'}, scores in "
            "float64. Metrics in percent, ID positive, 95% bootstrap intervals; the mean over "
            "the natural-image sets present (here the two TinyImageNet sets) has no interval. "
            "The left-out columns are the selection's own numbers, on the ensemble's left-out "
            "pairs, whichever network the row is.",
            "",
            goal_sentence(results, record),
            "",
            markdown_table(summary, list(summary[0])),
            "",
            *set_tables(results, record),
        ]
    )
    write_section(Path("docs/results.md"), body, "detectors")
    print(body)
    if cost_rows:
        columns = [
            "detector",
            "settings",
            "fit seconds (bf16)",
            "statistics (MB)",
            "images/s, float32",
            "images/s, bf16",
        ]
        cost = "\n".join(
            [
                "## Detector costs",
                "",
                f"`{command}`, its costs stage, run alone: the trained cpu-cifar10 ensemble (K = 5), "
                "batch 256. "
                "Fit: each member's statistics streamed over its kept classes' training images "
                "(about 36,000 per member), uncached. Scoring: 1,000 TinyImageNet-crop images "
                "through all five members, at the settings chosen on the left-out classes.",
                "",
                markdown_table(cost_rows, columns),
            ]
        )
        write_section(Path("docs/benchmarks.md"), cost, "detector-costs")
        print(cost)


if __name__ == "__main__":
    main()
