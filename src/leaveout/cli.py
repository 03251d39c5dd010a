"""The `leaveout` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import datasets
from .config import list_presets
from .errors import ConfigError, LeaveoutError
from .reports import text_table


def _add_data_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="where datasets are looked for (default: $LEAVEOUT_DATA or ~/.cache/leaveout)",
    )


def cmd_data(args: argparse.Namespace) -> int:
    root = args.data_root or datasets.default_data_root()
    if args.name:
        data = datasets.load_dataset(args.name, split=args.split, root=root)
        print(data.describe())
        return 0
    rows = datasets.catalog(root, verify=args.verify)
    columns = ["name", "split", "kind", "status", "images", "location"]
    if args.verify:
        columns.append("checksum")
    print(f"data root: {root}\n")
    print(text_table(rows, columns))
    missing = [r for r in rows if r["status"] == "missing"]
    if missing:
        print("\nmissing sets, with where to get them (or `leaveout download NAME`):")
        for row in missing:
            if row["split"] in ("all", "test"):
                print(f"  {row['name']}: {row['source']}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    root = args.data_root or datasets.default_data_root()
    path = datasets.download(args.name, root, source=args.source, force=args.force)
    print(f"{args.name}: {path} (checksum ok)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .config import resolve
    from .distributed import World
    from .training import summary_table, train

    overrides = list(args.set or [])
    if args.mode:
        overrides.append(f'train.mode="{args.mode}"')
    cfg = resolve(args.preset, args.config, overrides)
    summaries = train(
        cfg,
        args.out,
        data_root=args.data_root,
        device=args.device,
        member=args.member,
        force=args.force,
        progress=not args.quiet,
    )
    if World.from_env().main:  # under torchrun, one table
        print(summary_table(summaries))
        print(f"run directory: {args.out}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .training import run_status

    rows = run_status(args.run_dir)
    print(
        text_table(rows, ["member", "status", "epoch", "val acc %", "val AUROC %", "last update"])
    )
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibration import calibrate_left_out, calibrate_on_pair, save_calibration
    from .evaluation import id_test_parts, ood_parts, run_config
    from .scoring import LeaveOutEnsemble
    from .training import load_splits

    ensemble = LeaveOutEnsemble.load(args.run_dir, args.device)
    if args.method != "leaveout":
        return _calibrate_baseline(args, ensemble)
    common = {
        "criterion": args.criterion,
        "gradient": args.gradient or "entropy",
        "batch_size": args.batch_size,
        "progress": not args.quiet,
    }
    splits = load_splits(run_config(args.run_dir), args.data_root)
    if args.ood:
        id_tune = id_test_parts(splits)["tune"]
        ood_tune = ood_parts(args.ood, splits, args.data_root, ensemble.image_size)["tune"]
        calibration, rows = calibrate_on_pair(ensemble, id_tune, ood_tune, **common)
        source = f"ID test tuning part vs {args.ood} tuning part"
    else:
        calibration, rows = calibrate_left_out(ensemble, splits["val"], **common)
        source = "left-out classes (validation split)"
    path = save_calibration(args.run_dir, calibration, rows, source, args.criterion)
    print(text_table(rows, ["T", "eps", "FPR95", "DetErr", "AUROC"]))
    print(
        f"\nchosen on {source} by {args.criterion}: T = {calibration.temperature:g}, "
        f"eps = {calibration.epsilon:g}, threshold = {calibration.threshold:.4f}"
    )
    print(f"saved to {path}")
    return 0


def _calibrate_baseline(args: argparse.Namespace, ensemble: object) -> int:
    from .calibration import calibrate_baseline_left_out, save_baseline_calibration
    from .evaluation import cache_dir, gaussian_fits, run_config
    from .training import load_splits

    if args.ood:
        raise ConfigError("baselines are calibrated on the ensemble's left-out classes; drop --ood")
    splits = load_splits(run_config(args.run_dir), args.data_root)
    fits = None
    if args.method == "mahalanobis":
        fits = gaussian_fits(
            ensemble, splits["train"], cache_dir(args.run_dir, ensemble), args.batch_size
        )
    settings, rows = calibrate_baseline_left_out(
        args.method, ensemble, splits["val"], fits, args.criterion, batch_size=args.batch_size
    )
    source = f"left-out classes of {args.run_dir} (validation split)"
    print(text_table(rows, [*settings, "FPR95", "DetErr", "AUROC"]))
    for run_dir in [args.run_dir, *args.also]:
        path = save_baseline_calibration(
            run_dir, args.method, settings, rows, source, args.criterion
        )
        print(f"{args.method}: {settings}; saved to {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate, results_markdown

    result = evaluate(
        args.run_dir,
        args.ood,
        data_root=args.data_root,
        method_name=args.method,
        temperature=args.temperature,
        epsilon=args.epsilon,
        gradient=args.gradient,
        batch_size=args.batch_size,
        device=args.device,
        ood_positive=args.ood_positive,
        progress=not args.quiet,
    )
    print(results_markdown(result))
    folder = Path(args.run_dir) / "eval"
    print(f"written to {folder if args.method == 'leaveout' else folder / args.method}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .data import read_named_images
    from .reports import csv_table
    from .scoring import LeaveOutEnsemble

    ensemble = LeaveOutEnsemble.load(args.run_dir, args.device)
    if ensemble.calibration is None or ensemble.calibration.threshold is None:
        raise ConfigError(
            f"{args.run_dir} has no calibration yet: run `leaveout calibrate {args.run_dir}`"
        )
    names, images = read_named_images(
        args.paths, size=ensemble.image_size[0], skip_corrupt=args.skip_corrupt
    )
    scores = ensemble.score(images, batch_size=args.batch_size, progress=not args.quiet)
    predicted = ensemble.predict(images, args.batch_size)
    threshold = ensemble.calibration.threshold
    rows = [
        {
            "path": n,
            "score": f"{s:.6f}",
            "is_ood": int(s < threshold),
            "predicted": ensemble.classes[p],
        }
        for n, s, p in zip(names, scores, predicted)
    ]
    text = csv_table(rows, ["path", "score", "is_ood", "predicted"])
    if args.out:
        from . import _io

        _io.write_text(args.out, text)
        flagged = sum(r["is_ood"] for r in rows)
        print(
            f"{len(rows)} images scored, {flagged} flagged OOD (threshold {threshold:.4f}); wrote {args.out}"
        )
    else:
        print(text, end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, device=args.device, progress=not args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leaveout",
        description="OOD detection with an ensemble of self-supervised leave-out classifiers",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="list known datasets and where they are, or describe one")
    p.add_argument("name", nargs="?", help="describe this dataset (name or path) instead")
    p.add_argument("--split", default=None, help="train or test (CIFAR)")
    p.add_argument("--verify", action="store_true", help="check archive and npz checksums")
    _add_data_root(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("download", help="fetch a dataset's official archive and check its MD5")
    p.add_argument("name", choices=[n for n, i in datasets.DATASETS.items() if i.archive])
    p.add_argument("--source", help="a mirror URL or a local copy of the archive to use instead")
    p.add_argument("--force", action="store_true", help="download again even if present")
    _add_data_root(p)
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("train", help="train the leave-out ensemble (or a standard classifier)")
    p.add_argument("--preset", default=None, help=f"one of: {', '.join(list_presets())}")
    p.add_argument("--config", type=Path, help="a TOML file applied over the preset")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a setting")
    p.add_argument("--out", type=Path, required=True, help="the run directory")
    p.add_argument(
        "--mode", choices=["leaveout", "standard"], help="shortcut for --set train.mode=..."
    )
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if present)"
    )
    p.add_argument(
        "--member", type=int, help="train only this member (members can run as separate jobs)"
    )
    p.add_argument(
        "--force", action="store_true", help="continue a run directory whose config differs"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_data_root(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("status", help="per member: done, training, stopped, failed or missing")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("calibrate", help="choose T and eps on validation data (saved in the run)")
    p.add_argument("run_dir", type=Path)
    p.add_argument(
        "--ood", help="validate against this OOD set's tuning part (default: left-out classes)"
    )
    p.add_argument("--criterion", default="fpr95", choices=["fpr95", "auroc", "deterr"])
    p.add_argument(
        "--method",
        default="leaveout",
        choices=["leaveout", "msp", "odin", "energy", "mahalanobis"],
        help="calibrate a baseline instead (on the members' left-out classes)",
    )
    p.add_argument(
        "--also",
        type=Path,
        nargs="*",
        default=[],
        help="write a baseline's chosen settings into these runs too (e.g. a standard run)",
    )
    _add_scoring_options(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("evaluate", help="metrics, tables and plots against OOD sets")
    p.add_argument("run_dir", type=Path)
    p.add_argument(
        "--ood",
        nargs="+",
        default=["tiny_imagenet_crop", "tiny_imagenet_resize", "uniform", "gaussian"],
        help="OOD sets: names, paths, or 'unseen' (the run's held-out classes)",
    )
    p.add_argument(
        "--method",
        default="leaveout",
        choices=["leaveout", "msp", "odin", "energy", "mahalanobis"],
        help="the ensemble's score, or a baseline (summed over the run's members)",
    )
    p.add_argument("--temperature", type=float, help="override the calibrated T")
    p.add_argument("--epsilon", type=float, help="override the calibrated eps (pixel units)")
    p.add_argument(
        "--ood-positive",
        action="store_true",
        help="FPR95 with OOD as the positive class (pytorch-ood/OpenOOD convention)",
    )
    _add_scoring_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("score", help="score image files, folders or archives (CSV)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("paths", nargs="+", help="image files, folders, .tar/.tar.gz/.zip archives")
    p.add_argument("--out", type=Path, help="write the CSV here (default: standard output)")
    p.add_argument(
        "--skip-corrupt", action="store_true", help="skip unreadable images (with a warning)"
    )
    _add_scoring_options(p, data=False)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser(
        "demo", help="train, calibrate and evaluate on the embedded digits (about a minute)"
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def _add_scoring_options(p: argparse.ArgumentParser, data: bool = True) -> None:
    p.add_argument(
        "--gradient",
        choices=["entropy", "odin"],
        default=None,
        help="input-step gradient: entropy (paper, default) or odin (cross-entropy)",
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if data:
        _add_data_root(p)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LeaveoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
