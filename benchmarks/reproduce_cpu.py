"""One command: the cpu-cifar10 ensemble against the baselines, tuned fairly, into docs/results.md.

Stages (each reuses what exists and matches, so a re-run only redoes what is missing):
1. train the cpu-cifar10 leave-out ensemble (K=5) and a standard classifier of the same network,
   data and budget (`--mode standard`);
2. calibrate without touching any test OOD set: the ensemble on its own left-out classes; every
   baseline's T / eps on the same left-out pairs, scored by the ensemble's members one at a time,
   and the chosen settings applied to the standard classifier;
3. evaluate every method on every OOD set present under the data root (reporting parts of the
   seeded, class-stratified split; 95% bootstrap intervals), and compare the ensemble with every
   baseline on the same images (paired bootstrap intervals of the differences);
4. write docs/results.md: one table per OOD set, ID accuracy, the paired comparisons, per-member
   training results, the wall time of each stage, and the paper's numbers.
With --seeds N everything is trained and evaluated N times (train.seed = 0..N-1; about 30 minutes
per seed on two cores) and the tables add the mean and standard deviation over seeds; the
targets table adds each target's mean over seeds and on how many seeds it is met.

    python benchmarks/reproduce_cpu.py --data-root ../shared/data [--runs runs] [--seeds 1] [--out docs/results.md]
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from leaveout import files, training
from leaveout.config import resolve
from leaveout.data import catalog
from leaveout.detectors import calibrate, load_detector, run_sets, transfer_calibration
from leaveout.detectors.base import SELECTION_RESAMPLES, chosen_row
from leaveout.devices import keep_freed_memory
from leaveout.ensemble import LeaveOutEnsemble
from leaveout.evaluation import compare, evaluate
from leaveout.metrics import METRIC_NAMES
from leaveout.reports import markdown_table, read_section, replace_section
from leaveout.rundir import RunDir

BASELINES = ("msp", "odin", "energy", "mahalanobis")
PRESET = "cpu-cifar10"
LABELS = {
    "leaveout": "leave-out ensemble, K=5 (ours)",
    "msp": "max-softmax (standard classifier)",
    "odin": "ODIN (standard classifier)",
    "energy": "energy (standard classifier)",
    "mahalanobis": "Mahalanobis (standard classifier)",
}
# method.md section 8: the paper's DenseNet-BC-100 on CIFAR-10, and its ODIN / baseline rows.
PAPER = {
    "tiny_imagenet_crop": {
        "paper: leave-out, DenseNet-BC-100": (1.23, 2.63, 99.65, 99.68, 99.64),
        "paper: ODIN, DenseNet-BC-100": (4.3, None, 99.1, None, None),
        "paper: max-softmax, DenseNet-BC-100": (34.7, None, 95.3, None, None),
    },
    "tiny_imagenet_resize": {
        "paper: leave-out, DenseNet-BC-100": (2.93, 3.84, 99.34, 99.37, 99.32),
        "paper: ODIN, DenseNet-BC-100": (7.5, None, 98.5, None, None),
        "paper: max-softmax, DenseNet-BC-100": (40.8, None, 94.1, None, None),
    },
    "lsun_crop": {
        "paper: leave-out, DenseNet-BC-100": (3.42, 4.12, 99.25, 99.29, 99.24),
        "paper: ODIN, DenseNet-BC-100": (8.7, None, 98.2, None, None),
    },
    "lsun_resize": {
        "paper: leave-out, DenseNet-BC-100": (0.77, 2.10, 99.75, 99.77, 99.73),
        "paper: ODIN, DenseNet-BC-100": (3.8, None, 99.2, None, None),
    },
    "isun": {"paper: ODIN, DenseNet-BC-100": (6.3, None, 98.8, None, None)},
    "uniform": {"paper: ODIN, DenseNet-BC-100": (0.0, None, 99.9, None, None)},
    "gaussian": {"paper: ODIN, DenseNet-BC-100": (0.0, None, 100.0, None, None)},
}


def cpu_name() -> str:
    """The processor's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "an unnamed processor"


def present_ood_sets(root: Path) -> list[str]:
    rows = catalog(root)
    return [
        r["name"]
        for r in rows
        if r["kind"] in ("ood", "noise") and r["status"] in ("present", "generated")
    ]


class Stages:
    def __init__(self) -> None:
        self.rows: list[dict[str, str]] = []

    def run(self, name: str, fn, *args, **kwargs):
        print(f"\n== {name}", flush=True)
        start = time.time()
        result = fn(*args, **kwargs)
        self.rows.append({"stage": name, "minutes": f"{(time.time() - start) / 60:.1f}"})
        return result


def calibrate_all(
    ens_dir: Path,
    std_dir: Path,
    data_root: str,
    device: str = "cpu",
    amp: str = "none",
    max_images: int = 2000,
) -> None:
    """`leaveout calibrate ens_dir`, then `leaveout calibrate ens_dir --method NAME --also
    std_dir` for every baseline; a calibration already saved for the current weights is kept."""
    ens_run, std_run = RunDir(ens_dir).require(), RunDir(std_dir).require()
    ensemble = LeaveOutEnsemble.load(ens_run, device)
    sets = run_sets(ens_run, data_root)
    options = {"batch_size": 256, "progress": True, "amp": amp}
    if ens_run.current_calibration("leaveout") is None:
        detector = load_detector(ens_run, "leaveout", ensemble=ensemble, sets=sets, **options)
        calibrate(ens_run, detector, sets, max_images=max_images)
        print(f"leaveout: {detector.hyperparameters()}", flush=True)
    for name in BASELINES:
        if std_run.current_calibration(name) is not None:
            continue
        # chosen on the ensemble's left-out classes (members one at a time), saved in ens_dir
        detector = load_detector(ens_run, name, ensemble=ensemble, sets=sets, **options)
        if ens_run.current_calibration(name) is None:
            calibrate(ens_run, detector, sets, max_images=max_images)
        transfer_calibration(detector, std_run, device, data_root)
        print(f"{name}: {detector.hyperparameters()}", flush=True)


def member_table(ens_dir: Path) -> tuple[str, float]:
    run = RunDir(ens_dir)
    partition = run.read_partition()
    assert partition is not None, f"{ens_dir} is not a leave-out run"
    classes = run.read_info().classes
    rows, seconds = [], 0.0
    for m in range(partition.k):
        state = run.read_state(m)
        assert state is not None, f"{run.state_path(m)} is missing"
        seconds += state["seconds"]
        rows.append(
            {
                "member": m,
                "left out": ", ".join(classes[c] for c in partition.left_out(m)),
                "best epoch": state["best_epoch"],
                "val accuracy %": percent(state["val_acc"]),
                "val AUROC % (max-softmax, left-out classes)": percent(state["val_auroc"]),
                "minutes": f"{state['seconds'] / 60:.1f}",
            }
        )
    return markdown_table(rows, list(rows[0])), seconds


def accuracy_spread(per_seed: list, method: str) -> str:
    values = [100 * results[method]["id_accuracy"] for results, _ in per_seed]
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def percent(fraction: float | None) -> str:
    """A fraction (what the library returns) as percent with two decimals."""
    return fmt(None if fraction is None else 100 * fraction)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def chosen_params(run_dir: Path, name: str) -> dict:
    """The settings `leaveout calibrate` chose for detector `name` (calibration/<name>.json)."""
    record = RunDir(run_dir).read_calibration(name)
    return {} if record is None else dict(record["params"])


def chosen_share(run_dir: Path, name: str) -> str:
    """The share of bootstrap resamples of the validation images in which the chosen point wins."""
    record = RunDir(run_dir).read_calibration(name) or {}
    row = chosen_row(record.get("grid", []), record.get("params", {})) or {}
    return f"{100 * row['chosen_share']:.0f}%" if "chosen_share" in row else "an unmeasured share"


def with_interval(row: dict, name: str) -> str:
    """A metric in percent with its bootstrap interval: "73.30 (71.90-74.60)"."""
    low, high = row["intervals"][name]
    return f"{100 * row[name]:.2f} ({100 * low:.2f}-{100 * high:.2f})"


def seed_spread(per_seed: list, method: str, index: int, name: str) -> str:
    """Mean and standard deviation over seeds, in percent."""
    values = [100 * results[method]["rows"][index][name] for results, _ in per_seed]
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def comparison_table(comparisons: dict[str, dict]) -> str:
    rows = []
    for name, result in comparisons.items():
        for r in result["rows"]:
            row = {
                "OOD set": r["ood"],
                "baseline (standard classifier)": LABELS[name].split(" (")[0],
            }
            for metric in ("AUROC", "FPR95"):
                m = r[metric]
                row[f"{metric}: ours - baseline"] = (
                    f"{100 * m['difference']:+.2f} ({100 * m['low']:+.2f} to {100 * m['high']:+.2f})"
                )
            rows.append(row)
    rows.sort(key=lambda r: r["OOD set"])
    return markdown_table(rows, list(rows[0]) if rows else [])


def write_results(
    path: Path,
    per_seed: list,
    stages: Stages,
    ens_dir: Path,
    std_dir: Path,
    command: str,
    data_root: str = "../shared/data",
    preset: str = "cpu-cifar10",
    wall_minutes: float | None = None,
    scoring: dict | None = None,
    workers: int = 1,
) -> None:
    """docs/results.md from evaluate()'s and compare()'s results (fractions; tables in percent).

    per_seed: [(results by method, comparisons by baseline)] for seeds 0, 1, ...; the tables show
    seed 0 with its bootstrap intervals, and the spread over seeds when there are several."""
    results, comparisons = per_seed[0]
    seeds = len(per_seed)
    scoring = scoring or {"amp": "none", "calibration_images": 2000}
    amp = "" if scoring["amp"] == "none" else f" --amp {scoring['amp']}"
    cal_flag = f" --max-images {scoring['calibration_images']}"
    members, train_seconds = member_table(ens_dir)
    std_state = RunDir(std_dir).read_state(0)
    assert std_state is not None, f"{std_dir} has no trained member"
    cal = chosen_params(ens_dir, "leaveout")
    oods = [r["ood"] for r in results["leaveout"]["rows"]]
    # the script trains the standard classifier beside the members, on a worker's share of threads
    threads_note = (
        f"OMP_NUM_THREADS={max(1, torch.get_num_threads() // workers)} " if workers > 1 else ""
    )
    from_scratch = sum(float(r["minutes"]) for r in stages.rows) / seeds
    training_minutes = next(
        float(r["minutes"]) for r in stages.rows if r["stage"].startswith("train")
    )
    baseline_settings = {name: chosen_params(std_dir, name) for name in BASELINES}
    ood_list = " ".join(oods)
    n_id = results["leaveout"]["rows"][0]["n_id"]
    spread_note = (
        f" The last columns give the mean ± standard deviation over {seeds} seeds (train.seed = "
        f"0..{seeds - 1}: other initialisations, batch orders and validation splits). The "
        "bootstrap intervals cover the choice of test images only; the spread over seeds adds the "
        "training's own variation: read a difference between methods against both."
        if seeds > 1
        else " One seed: `--seeds N` adds the spread over N trainings."
    )
    lines = [
        "# Results on CIFAR-10 (CPU budget)",
        "",
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d')}, "
        f"{cpu_name()} ({platform.machine()}) with {torch.get_num_threads()} threads, "
        f"torch {torch.__version__} (wall times depend on the processor: docs/benchmarks.md).",
        "",
        f"Setting: the `{preset}` preset ({describe(preset)}) on the JPEG-compressed CIFAR-10 "
        "copy in ../shared/data; the baselines run on a standard classifier of the same network, "
        "data and budget (`--mode standard`). Every set "
        "(the CIFAR-10 test split and each OOD set) gives 1000 images to tuning and reports on the "
        "rest; the tuning images are chosen by seeded keys of their pixels, stratified by class "
        "for the test split, so every class is in both parts and no row order matters. Metrics in "
        "percent with 95% percentile bootstrap intervals (1,000 resamples of ID and OOD "
        "independently), ID is the positive class (FPR95 = OOD accepted when 95% of ID is "
        "accepted)." + spread_note,
        "",
        "Earlier versions of this page held out the first 1000 test images for tuning, as ODIN "
        "did on the interleaved official order; in this class-sorted copy those are all "
        "airplanes, so their accuracy and metrics were measured on the other nine classes only.",
        "",
        "Tuning never touched a test OOD set: the ensemble's T and eps were chosen on its members' "
        f"own left-out classes (T = {cal.get('temperature')}, eps = {cal.get('epsilon')}, lowest mean "
        f"FPR95 over the paper's grid, the winner in {chosen_share(ens_dir, 'leaveout')} of "
        f"{SELECTION_RESAMPLES} bootstrap resamples of the validation images: the "
        "`chosen_share` column of calibration/leaveout.json); each baseline's T / eps on the same left-out pairs, scored by "
        "the ensemble's members one at a time, then applied to the standard classifier: "
        + "; ".join(f"{n} {s}" for n, s in baseline_settings.items())
        + f". Calibration used at most {scoring['calibration_images']} validation images per side "
        "and member. "
        + (
            "Every network pass of calibration and evaluation ran in bfloat16 autocast "
            "(`--amp bf16`), for every method alike; the scores are computed in float64 from the "
            "logits, and docs/benchmarks.md measures what bf16 changes against float32."
            if scoring["amp"] == "bf16"
            else "Every network pass ran in float32."
        ),
        "",
        "The same, step by step with the command-line tool:",
        "",
        "```bash",
        f"leaveout train --preset {preset} --workers {workers} --data-root {data_root} "
        f"--out {ens_dir}",
        f"{threads_note}leaveout train --preset {preset} --mode standard --data-root {data_root} "
        f"--out {std_dir}",
        f"leaveout calibrate {ens_dir} --method leaveout --data-root {data_root}{cal_flag}{amp}",
        f"for m in {' '.join(BASELINES)}; do leaveout calibrate {ens_dir} --method $m "
        f"--also {std_dir} --data-root {data_root}{cal_flag}{amp}; done",
        f"leaveout evaluate {ens_dir} --method leaveout --data-root {data_root} "
        f"--ood {ood_list}{amp}",
        f"for m in {' '.join(BASELINES)}; do leaveout evaluate {std_dir} "
        f"--method $m --data-root {data_root} --ood {ood_list}{amp}; done",
        f"for m in {' '.join(BASELINES)}; do leaveout compare {ens_dir} {std_dir}:$m "
        f"--data-root {data_root} --ood {ood_list}{amp}; done",
        "```",
        "",
        f"## ID accuracy (test reporting part, {n_id:,} images, every class)",
        "",
        markdown_table(
            [
                {
                    "model": LABELS["leaveout"],
                    "accuracy %": percent(results["leaveout"]["id_accuracy"]),
                }
                | (
                    {"mean ± sd over seeds": accuracy_spread(per_seed, "leaveout")}
                    if seeds > 1
                    else {}
                ),
                {
                    "model": "standard classifier",
                    "accuracy %": percent(results["msp"]["id_accuracy"]),
                }
                | ({"mean ± sd over seeds": accuracy_spread(per_seed, "msp")} if seeds > 1 else {}),
            ],
            ["model", "accuracy %", *(["mean ± sd over seeds"] if seeds > 1 else [])],
        ),
        "",
        "## Targets",
        "",
        targets_table(per_seed, wall_minutes, training_minutes),
        "",
        "<!-- targets-notes:start -->",
        "<!-- targets-notes:end -->",
        "",
        "## OOD detection, one table per set",
    ]
    spread_columns = [f"{n} mean ± sd" for n in ("FPR95", "AUROC")] if seeds > 1 else []
    for index, ood in enumerate(oods):
        rows = []
        for method, result in results.items():
            metrics = result["rows"][index]
            row = {"method": LABELS[method], **{k: with_interval(metrics, k) for k in METRIC_NAMES}}
            for column, name in zip(spread_columns, ("FPR95", "AUROC")):
                row[column] = seed_spread(per_seed, method, index, name)
            rows.append(row)
        for label, values in PAPER.get(ood, {}).items():
            rows.append({"method": label, **{k: fmt(v) for k, v in zip(METRIC_NAMES, values)}})
        n_ood = results["leaveout"]["rows"][index]["n_ood"]
        lines += [
            "",
            f"### {ood} ({n_ood} images)",
            "",
            markdown_table(rows, ["method", *METRIC_NAMES, *spread_columns]),
        ]
    lines += [
        "",
        "## The ensemble against each baseline, on the same images",
        "",
        "Differences in percentage points (ours minus the baseline on the standard classifier) "
        "with 95% paired bootstrap intervals: both detectors are resampled with the same indices. "
        "For AUROC higher is better, for FPR95 lower; an interval that excludes 0 is a difference "
        "the resampling does not explain away (seed 0; `leaveout compare`).",
        "",
        comparison_table(comparisons),
        "",
        "## Training",
        "",
        f"Leave-out members (validation: a stratified 10% of the training split). Their own "
        f"training times add up to {train_seconds / 60:.1f} minutes; the standard classifier took "
        f"{std_state['seconds'] / 60:.1f} minutes (val accuracy {percent(std_state['val_acc'])}%). "
        f"With `--workers {workers}` they trained {workers} at a time: seed 0's training stage took "
        f"{training_minutes:.1f} minutes of wall time.",
        "",
        members,
        "",
        "## Wall time of this command",
        "",
        markdown_table(stages.rows, ["stage", "minutes"]),
        "",
        "The stages are those of the run from an empty runs/ folder; a later run with more "
        "`--seeds` adds the stages of its new seeds. "
        f"From an empty runs/ folder the command takes about {from_scratch:.0f} minutes per seed.",
        "",
        "## What is comparable",
        "",
        "The paper's rows use DenseNet-BC-100 trained for 100 epochs on the official CIFAR-10 and "
        f"ODIN's own TinyImageNet crops/resizes; ours use the network above ({describe(preset)}) "
        "on a JPEG-compressed copy and rebuilt TinyImageNet sets, and tune on left-out classes "
        "instead of iSUN. Compare the ordering of methods within a table, not the absolute numbers "
        "across the two settings.",
        "",
        "## The noise sets",
        "",
        noise_note(results),
        "",
    ]
    text = "\n".join(lines)
    # written by ablation.py and detectors.py, and the readings of the targets and of the
    # detectors, by hand: kept
    for section in ("targets-notes", "ablation", "detectors", "detectors-notes"):
        kept = read_section(path.read_text(), section) if path.is_file() else None
        if kept:
            text = replace_section(text, section, kept)
    files.write_text(path, text)


def describe(preset: str) -> str:
    """The preset's recipe in words, from its settings."""
    cfg = resolve(preset)
    d, m, o, t = cfg.data, cfg.model, cfg.optim, cfg.train
    parts = [
        f"network {m.name}",
        f"{t.epochs} epochs",
        f"batches of {t.batch_size} ID + {t.ood_batch_size} left-out images",
        f"SGD {o.lr:g}{' Nesterov' if o.nesterov else ''} momentum {o.momentum:g}, "
        f"{o.schedule} schedule",
        f"label smoothing {t.label_smoothing:g}" if t.label_smoothing else "",
        whitening_bias(t.whiten_bias_epochs),
        f"crop padding {d.padding}" + (", flips" if d.hflip else ""),
        test_views(d),
        f"{t.amp} autocast" if t.amp != "none" else "",
        f"K = {t.k}, m = {t.margin:g}, beta = {t.beta:g}",
    ]
    return ", ".join(p for p in parts if p)


def whitening_bias(epochs: int) -> str:
    """When an airnet's whitening bias learns, in words ("" for every epoch, the default)."""
    if epochs < 0:
        return ""
    return (
        f"whitening bias learning in the first {epochs} epochs"
        if epochs
        else "whitening bias frozen"
    )


def test_views(d) -> str:
    """The test-time views of classification in words."""
    views = (["flip"] if d.test_flip else []) + (
        [f"{d.test_shift}-pixel shifts"] if d.test_shift else []
    )
    return f"{' and '.join(views)} test-time augmentation for classification" if views else ""


TARGETS = {"accuracy": 87.0, "FPR95": 55.0, "AUROC": 85.0, "minutes": 30.0}
AHEAD_OF = ("msp", "odin", "energy")
TIN_SETS = ("tiny_imagenet_crop", "tiny_imagenet_resize")


@dataclass
class Check:
    """One target on one seed: the values measured, how to print them, and whether it is met."""

    target: str
    values: tuple[float, ...]
    form: str  # str.format pattern over the values
    met: bool
    detail: str = ""  # more for the seed-0 column (intervals)


def target_checks(results: dict, comparisons: dict) -> list[Check]:
    """The [3/5] targets on one seed's results (the wall time is added by targets_table)."""
    accuracy = 100 * results["leaveout"]["id_accuracy"]
    checks = [
        Check(
            f"ensemble ID accuracy >= {TARGETS['accuracy']:g}%",
            (accuracy,),
            "{0:.2f}%",
            accuracy >= TARGETS["accuracy"],
        )
    ]
    ours = {r["ood"]: r for r in results["leaveout"]["rows"]}
    if "tiny_imagenet_crop" in ours:
        crop = ours["tiny_imagenet_crop"]
        fpr, auc = 100 * crop["FPR95"], 100 * crop["AUROC"]
        checks += [
            Check(
                f"TinyImageNet-crop FPR95 <= {TARGETS['FPR95']:g}",
                (fpr,),
                "{0:.2f}",
                fpr <= TARGETS["FPR95"],
            ),
            Check(
                f"TinyImageNet-crop AUROC >= {TARGETS['AUROC']:g}",
                (auc,),
                "{0:.2f}",
                auc >= TARGETS["AUROC"],
            ),
        ]
    for name in AHEAD_OF:
        for r in comparisons.get(name, {}).get("rows", []):
            if r["ood"] not in TIN_SETS:
                continue
            auc, fpr = r["AUROC"], r["FPR95"]
            checks.append(
                Check(
                    f"ahead of {name} on {r['ood']} (AUROC up, FPR95 down)",
                    (100 * auc["difference"], 100 * fpr["difference"]),
                    "AUROC {0:+.2f}, FPR95 {1:+.2f}",
                    auc["difference"] > 0 and fpr["difference"] < 0,
                    f"AUROC {100 * auc['difference']:+.2f} ({100 * auc['low']:+.2f} to "
                    f"{100 * auc['high']:+.2f}), FPR95 {100 * fpr['difference']:+.2f} "
                    f"({100 * fpr['low']:+.2f} to {100 * fpr['high']:+.2f})",
                )
            )
    return checks


def verdict(met: bool) -> str:
    return "met" if met else "missed"


def targets_table(per_seed: list, wall_minutes: float | None, training_minutes: float) -> str:
    """The [3/5] targets on seed 0 (with intervals) and, with several seeds, their mean over
    seeds and on how many seeds each is met."""
    seeds = [{c.target: c for c in target_checks(*seed)} for seed in per_seed]
    over = f"mean over {len(seeds)} seeds" if len(seeds) > 1 else ""
    rows = []
    for target, check in seeds[0].items():
        row = {
            "target": target,
            "seed 0": check.detail or check.form.format(*check.values),
            "": verdict(check.met),
        }
        if over:
            found = [seed[target] for seed in seeds if target in seed]
            mean = np.mean([c.values for c in found], axis=0)
            met = sum(c.met for c in found)
            row[over] = f"{check.form.format(*mean)}; met on {met} of {len(found)} seeds"
        rows.append(row)
    if wall_minutes is not None:
        rows.append(
            {
                "target": f"the whole command (one seed) from an empty runs folder <= "
                f"{TARGETS['minutes']:g} minutes",
                "seed 0": f"{wall_minutes:.1f} minutes (training {training_minutes:.1f})",
                "": verdict(wall_minutes <= TARGETS["minutes"]),
            }
            | ({over: ""} if over else {})
        )
    return markdown_table(rows, ["target", "seed 0", "", *([over] if over else [])])


def noise_note(results: dict) -> str:
    """One paragraph on the noise sets, from the measured AUROCs (ours and Mahalanobis')."""

    def auroc_of(method: str, ood: str) -> float | None:
        rows = [r for r in results[method]["rows"] if r["ood"] == ood]
        return 100 * rows[0]["AUROC"] if rows else None

    ours = [auroc_of("leaveout", n) for n in ("uniform", "gaussian")]
    theirs = [auroc_of("mahalanobis", n) for n in ("uniform", "gaussian")]
    if None in ours or None in theirs:
        return "No noise set was evaluated."
    numbers = (
        f"ours {ours[0]:.1f} / {ours[1]:.1f}, Mahalanobis {theirs[0]:.1f} / {theirs[1]:.1f} "
        "(AUROC, uniform / Gaussian)"
    )
    if min(ours) >= 99:
        return (
            f"Reported as they come: {numbers}. Noise is separated almost perfectly by every "
            "softmax-based score on this network: the members respond weakly to it (smaller "
            "penultimate features and logits near zero than on natural images), so their "
            "softmaxes are nearly flat, high entropy and low maximum, which is exactly what the "
            "leave-out score reads. A distance in feature space (Mahalanobis) separates it less "
            "well on this network. The first CPU recipe (ResNet-8) did the opposite: its softmax was confident on noise "
            "and the leave-out score failed there."
        )
    return (
        f"Reported as they come: {numbers}. The score reads only each member's softmax (its "
        "maximum and its entropy); noise lies far from every training image, where a small "
        "network's softmax is not forced to be flat and can be as confident as on an ID image. "
        "Mahalanobis measures a distance in feature space instead."
    )


def run_dirs(runs: Path, seed: int) -> tuple[Path, Path]:
    """The ensemble's and the standard classifier's run directories of one seed."""
    suffix = "" if seed == 0 else f"-seed{seed}"
    return runs / f"{PRESET}{suffix}", runs / f"{PRESET}-standard{suffix}"


def reproduce_seed(
    seed: int, runs: Path, data_root: str, device: str, stages: Stages, scoring: dict, workers: int
) -> tuple[dict[str, dict], dict[str, dict]]:
    """Train, calibrate, evaluate and compare everything for one seed: (results, comparisons)."""
    ens_dir, std_dir = run_dirs(runs, seed)
    tag = f" (seed {seed})" if seed else ""
    seed_setting = [f"train.seed={seed}"]
    ensemble = resolve(PRESET, overrides=seed_setting)
    standard = resolve(PRESET, overrides=['train.mode="standard"', *seed_setting])
    stages.run(
        f"train the leave-out ensemble and the standard classifier, {workers} at a time{tag}",
        training.train_runs,
        [(ensemble, ens_dir), (standard, std_dir)],
        data_root,
        device,
        workers,
    )
    stages.run(
        f"calibrate every method{tag}",
        calibrate_all,
        ens_dir,
        std_dir,
        data_root,
        device,
        scoring["amp"],
        scoring["calibration_images"],
    )
    oods = present_ood_sets(Path(data_root))
    results = {
        "leaveout": stages.run(
            f"evaluate the ensemble{tag}",
            evaluate,
            ens_dir,
            oods,
            data_root,
            method="leaveout",
            device=device,
            amp=scoring["amp"],
        )
    }
    comparisons = {}
    for name in BASELINES:
        results[name] = stages.run(
            f"evaluate {name}{tag}",
            evaluate,
            std_dir,
            oods,
            data_root,
            method=name,
            device=device,
            amp=scoring["amp"],
        )
        comparisons[name] = stages.run(
            f"compare the ensemble with {name}{tag}",
            compare,
            (ens_dir, "leaveout"),
            (std_dir, name),
            oods,
            data_root,
            device=device,
            amp=scoring["amp"],
        )
    return results, comparisons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, default=Path("docs/results.md"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", type=int, default=1, help="train and evaluate this many seeds")
    parser.add_argument(
        "--amp",
        default="bf16",
        choices=("none", "bf16"),
        help="precision of the networks' passes when scoring (scores are float64 either way)",
    )
    parser.add_argument(
        "--calibration-images",
        type=int,
        default=1000,
        help="left-out calibration images per side and member",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="networks trained side by side, each in its own process with a share of the threads",
    )
    args = parser.parse_args()
    keep_freed_memory()  # as the command line does
    scoring = {"amp": args.amp, "calibration_images": args.calibration_images}
    command = f"python benchmarks/reproduce_cpu.py --data-root {args.data_root}"
    if args.seeds > 1:
        command += f" --seeds {args.seeds}"
    for flag, value, default in (
        ("--workers", args.workers, 2),
        ("--amp", args.amp, "bf16"),
        ("--calibration-images", args.calibration_images, 1000),
    ):
        if value != default:
            command += f" {flag} {value}"
    ens_dir, std_dir = run_dirs(args.runs, 0)
    from_empty = not ens_dir.exists() and not std_dir.exists()
    stages = Stages()
    per_seed, seed_minutes = [], []
    for seed in range(args.seeds):
        started = time.time()
        per_seed.append(
            reproduce_seed(
                seed, args.runs, args.data_root, args.device, stages, scoring, args.workers
            )
        )
        seed_minutes.append((time.time() - started) / 60)
    # the wall time counts only from an empty runs folder; it is kept for later re-runs. The
    # target is the default command's, one seed: "minutes" is seed 0's
    wall_file = args.runs / f"{PRESET}-wall-time.json"
    if from_empty:
        files.write_json(
            wall_file,
            {"minutes": seed_minutes[0], "seed_minutes": seed_minutes, "stages": stages.rows},
        )
    wall = None
    if wall_file.is_file():  # the stage times shown are those of the run from an empty folder
        saved = files.read_json(wall_file)
        known = {row["stage"] for row in saved["stages"]}
        added = [row for row in stages.rows if row["stage"] not in known]  # more seeds, later
        if added and not from_empty:
            saved["stages"] += added
            files.write_json(wall_file, saved)
        wall, stages.rows = saved["minutes"], saved["stages"]
    write_results(
        args.out,
        per_seed,
        stages,
        ens_dir,
        std_dir,
        command,
        args.data_root,
        PRESET,
        wall,
        scoring,
        args.workers,
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
