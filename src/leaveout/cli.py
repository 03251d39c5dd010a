"""The `leaveout` command line: a thin layer over the library, one function per subcommand."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import RESIZE_RULES, list_presets
from .data import sets as datasets
from .data.splits import SPLIT_RULES
from .detectors import CRITERIA, list_detectors
from .detectors.base import DEFAULT_CALIBRATION_IMAGES, SCORING_AMP
from .detectors.perturb import OBJECTIVES
from .devices import DEVICE_HELP, keep_freed_memory
from .errors import ConfigError, LeaveoutError, LeaveoutWarning

DEFAULT_OOD = ["tiny_imagenet_crop", "tiny_imagenet_resize", "uniform", "gaussian"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after every option that has one; examples kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


# --- subcommands -----------------------------------------------------------------------------------


def cmd_data(args: argparse.Namespace) -> int:
    from .reports import text_table

    root = args.data_root or datasets.default_data_root()
    if args.name:
        print(datasets.load_dataset(args.name, split=args.split, root=root).describe())
        return 0
    rows = datasets.catalog(root, verify=args.verify)
    columns = ["name", "split", "kind", "status", "images", "location"]
    print(f"data root: {root}\n")
    print(text_table(rows, [*columns, "checksum"] if args.verify else columns))
    missing = [r for r in rows if r["status"] == "missing" and r["split"] in ("all", "test")]
    if missing:
        print("\nmissing sets, with where to get them (or `leaveout download NAME`):")
        for row in missing:
            print(f"  {row['name']}: {row['source']}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    root = args.data_root or datasets.default_data_root()
    done = datasets.download(args.name, root, source=args.source, force=args.force)
    print(f"{args.name}: {done.path} ({done.checksum})")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from .data.packed import pack_info

    if args.size is not None and len(args.size) > 2:
        raise ConfigError(f"--size takes H, or H W; got {len(args.size)} numbers")
    size = None if args.size is None else (args.size[0], args.size[-1])
    out = datasets.pack_dataset(
        args.source,
        args.out_dir,
        split=args.split,
        root=args.data_root,
        size=size,
        resize=args.resize,
        layout=args.layout,
        skip_corrupt=args.skip_corrupt,
        progress=not args.quiet,
    )
    info = pack_info(out)
    h, w = info["shape"][1:3]
    labels = f"{len(info['classes'])} classes" if info["classes"] else "unlabelled"
    print(f"packed {info['count']} images ({h}x{w}, {labels}) into {out}")
    if info["skipped"]:
        print(f"skipped {len(info['skipped'])} unreadable files, e.g. {info['skipped'][0]}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .config import resolve
    from .distributed import World
    from .training import summary_table, train

    overrides = list(args.set or [])
    if args.data:
        overrides.append(f"data.dataset={json.dumps(str(args.data))}")
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
        workers=args.workers,
    )
    if World.from_env().main:  # under torchrun, one table
        print(summary_table(summaries))
        print(f"run directory: {args.out}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .reports import text_table
    from .rundir import RunDir

    rows = RunDir(args.run_dir).status()
    columns = ["member", "status", "epoch", "val acc %", "val AUROC %", "last update"]
    print(text_table(rows, columns))
    return 0


def selection_note(grid: list[dict[str, Any]], chosen: dict[str, Any]) -> str:
    """How stable the choice is: its share of bootstrap resamples (column chosen_share)."""
    from .detectors.base import SELECTION_RESAMPLES, chosen_row

    share = 100 * chosen_row(grid, chosen)["chosen_share"]
    note = (
        f"the choice wins {share:.0f}% of {SELECTION_RESAMPLES} bootstrap resamples of the "
        "validation images (chosen_share)"
    )
    if share < 50:
        note += (
            ": the points that win the others are near-ties on these images, and test sets may "
            "rank them differently (more validation images narrow it)"
        )
    return note


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .detectors import calibrate, create_detector, run_sets, transfer_calibration
    from .detectors.runs import cached_statistics
    from .ensemble import LeaveOutEnsemble
    from .evaluation import ID_SET, EvaluationSets, Protocol, capped
    from .reports import format_number, text_table
    from .rundir import RunDir

    run = RunDir(args.run_dir).require()
    ensemble = LeaveOutEnsemble.load(run, args.device)
    if ensemble.partition is None and not args.ood:
        raise ConfigError(
            f"{run.path} is a standard run: it has no left-out classes to calibrate on. Pass "
            "--ood NAME, or calibrate a leave-out run with --also pointing here"
        )
    sets = run_sets(run, args.data_root)
    if args.select:
        return select_and_report(args, run, ensemble, sets)
    protocol = Protocol(split=args.split, max_images=args.max_images)
    detector = create_detector(args.method, ensemble, **scoring_options(args), **gradient(args))
    detector.tpr, detector.criterion = args.tpr, args.criterion
    cached_statistics(detector, run, sets["train"])
    if args.ood:
        evaluation = EvaluationSets(run, args.data_root, protocol, sets)
        id_tune = capped(evaluation.parts(ID_SET)["tune"], args.max_images)
        ood_tune = capped(evaluation.parts(args.ood)["tune"], args.max_images)
        note(
            args,
            f"calibrating {args.method} on {len(id_tune)} ID and {len(ood_tune)} {args.ood} tuning images",
        )
        path = calibrate(run, detector, sets, ood=ood_tune, id_tuning=id_tune)
    else:
        note(args, f"calibrating {args.method} on the left-out classes of {ensemble.k} members")
        path = calibrate(run, detector, sets, max_images=args.max_images)
    keys = list(detector.grid_points()[0])
    rows = [
        {k: format_number(r[k]) for k in keys}
        | {m: f"{100 * r[m]:.2f}" for m in ("FPR95", "DetErr", "AUROC", "chosen_share")}
        for r in detector.grid_
    ]
    print(text_table(rows, [*keys, "FPR95", "DetErr", "AUROC", "chosen_share"]))
    chosen = ", ".join(f"{k} = {format_number(v)}" for k, v in detector.hyperparameters().items())
    print(
        f"\n{args.method}: chosen on {detector.validation_} by {args.criterion}: {chosen}; "
        f"threshold {format_number(detector.threshold_)} keeps {100 * args.tpr:g}% of ID validation images"
    )
    print(selection_note(detector.grid_, detector.hyperparameters()))
    print(f"saved to {path}")
    for other in args.also:
        print(
            f"also: {transfer_calibration(detector, RunDir(other).require(), args.device, args.data_root)}"
        )
    return 0


def select_and_report(args: argparse.Namespace, run: Any, ensemble: Any, sets: Any) -> int:
    """`calibrate --select auto`: every detector on the left-out classes, the table, the choice."""
    from .detectors import carry_selection, select_detector
    from .reports import format_number, text_table
    from .rundir import RunDir

    if args.ood:
        raise ConfigError("--select auto chooses on the left-out classes; it does not take --ood")
    note(args, f"calibrating every detector on the left-out classes of {ensemble.k} members")
    record = select_detector(
        run,
        ensemble,
        sets,
        criterion=args.criterion,
        max_images=args.max_images,
        **scoring_options(args),
    )
    rows = []
    for row in record["candidates"]:
        chosen = "*" if row["detector"] == record["chosen"] else ""
        if "error" in row:
            rows.append({"": chosen, "detector": row["detector"], "settings": row["error"]})
            continue
        settings = ", ".join(f"{k} = {format_number(v)}" for k, v in row["settings"].items())
        rows.append(
            {"": chosen, "detector": row["detector"], "settings": settings or "-"}
            | {m: f"{100 * row[m]:.2f}" for m in ("FPR95", "DetErr", "AUROC")}
        )
    print(text_table(rows, ["", "detector", "settings", "FPR95", "DetErr", "AUROC"]))
    print(
        f"\nchosen by {args.criterion} on the left-out classes: {record['chosen']}; saved to "
        f"{run.calibration_path('auto')} (`--method auto` uses it)"
    )
    for other in args.also:
        target = RunDir(other).require()
        for path in carry_selection(
            run, target, args.device, args.data_root, **scoring_options(args)
        ):
            print(f"also: {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate, results_markdown

    result = evaluate(
        args.run_dir,
        args.ood,
        data_root=args.data_root,
        method=args.method,
        params=detector_params(args),
        batch_size=args.batch_size,
        amp=args.amp,
        device=args.device,
        ood_positive=args.ood_positive,
        progress=not args.quiet,
        out=args.out,
        protocol=protocol(args),
    )
    print(results_markdown(result))
    print(f"written to {result['folder']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .evaluation import compare, compare_markdown

    result = compare(
        run_and_method(args.first),
        run_and_method(args.second),
        args.ood,
        data_root=args.data_root,
        batch_size=args.batch_size,
        amp=args.amp,
        device=args.device,
        ood_positive=args.ood_positive,
        progress=not args.quiet,
        out=args.out,
        protocol=protocol(args),
    )
    print(compare_markdown(result))
    print(f"written to {result['folder']}")
    return 0


def run_and_method(text: str) -> tuple[str, str]:
    """RUN_DIR[:METHOD] -> (run dir, method); the method defaults to leaveout."""
    run, _, method = text.rpartition(":") if ":" in Path(text).name else (text, "", "leaveout")
    if method not in [*list_detectors(), "auto"]:
        raise ConfigError(
            f"{text}: unknown detector {method!r}; known: {', '.join(list_detectors())}, auto"
        )
    return run, method


def protocol(args: argparse.Namespace) -> Any:
    from .evaluation import Protocol

    return Protocol(
        split=args.split, seed=args.seed, max_images=args.max_images, resamples=args.resamples
    )


def cmd_score(args: argparse.Namespace) -> int:
    from . import files
    from .data.images import read_named_images
    from .detectors import chosen_method, load_detector, run_sets
    from .reports import csv_table, format_number
    from .rundir import RunDir

    run = RunDir(args.run_dir).require()
    sets = None
    args.method = chosen_method(run, args.method)
    detector = load_detector(
        run,
        args.method,
        args.device,
        data_root=args.data_root,
        **scoring_options(args),
        **detector_params(args),
    )
    if args.threshold is not None:
        detector.threshold_, how = args.threshold, "given with --threshold"
    elif args.tpr is not None or getattr(detector, "threshold_", None) is None:
        if args.tpr is None and run.current_calibration(args.method) is None:
            raise ConfigError(
                f"{run.path} has no calibration of {args.method} for its current weights: run "
                f"`leaveout calibrate {run.path} --method {args.method}`, or pass --threshold or --tpr"
            )
        sets = sets or run_sets(run, args.data_root)
        detector.tpr = args.tpr or detector.tpr
        detector.fit(sets["val"], train=sets["train"])
        how = f"keeps {100 * detector.tpr:g}% of the run's {len(sets['val'])} ID validation images"
    else:
        how = f"keeps {100 * detector.tpr:g}% of ID validation images (calibration)"
    resize = args.resize or run.read_config().data.resize
    found = read_named_images(
        args.paths, detector.ensemble.image_size[0], args.skip_corrupt, resize
    )
    note(args, f"scoring {len(found.names)} images with {args.method}")
    scores = detector.score_samples(found.images)
    predicted = detector.ensemble.classify(found.images, args.batch_size, detector.amp)
    threshold = detector.fitted_threshold()
    rows = [
        {
            "path": n,
            "score": float(s),
            "is_ood": int(s < threshold),
            "predicted": detector.ensemble.classes[p],
        }
        for n, s, p in zip(found.names, scores, predicted)
    ]
    summary = f"{len(rows)} images scored, {sum(r['is_ood'] for r in rows)} flagged OOD (threshold {format_number(threshold)}, {how})"
    if args.out and Path(args.out).suffix.lower() == ".json":
        record = {
            "run": str(run.path),
            "method": detector.name,
            "settings": detector.scoring_params(),
            "amp": detector.amp,
            "threshold": threshold,
            "threshold_rule": how,
            "skipped": found.skipped,
            "images": rows,
        }
        files.write_json(args.out, record)
    elif args.out:
        files.write_text(args.out, csv_table(rows, ["path", "score", "is_ood", "predicted"]))
    else:
        print(csv_table(rows, ["path", "score", "is_ood", "predicted"]), end="")
    print(
        summary + (f"; wrote {args.out}" if args.out else ""),
        file=sys.stderr if not args.out else sys.stdout,
    )
    return 0


def cmd_detectors(args: argparse.Namespace) -> int:
    from .detectors import detector_class
    from .reports import text_table

    rows = []
    for name in list_detectors():
        cls = detector_class(name)
        rows.append(
            {
                "name": name,
                "searches": ", ".join(cls.default_search_space) or "-",
                "what": cls.summary,
            }
        )
    print(text_table(rows, ["name", "searches", "what"]))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, device=args.device, progress=not args.quiet)
    return 0


# --- options shared by several subcommands -------------------------------------------------------


def scoring_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"batch_size": args.batch_size, "progress": not args.quiet, "amp": args.amp}


def detector_params(args: argparse.Namespace) -> dict[str, Any]:
    """--temperature, --epsilon, --gradient and every --param NAME=VALUE, as detector settings
    that override the calibrated ones."""
    import tomllib

    params: dict[str, Any] = {
        key: getattr(args, key)
        for key in ("temperature", "epsilon")
        if getattr(args, key, None) is not None
    }
    for item in getattr(args, "param", None) or []:
        key, sep, value = item.partition("=")
        try:
            params[key.strip()] = tomllib.loads(f"value = {value}")["value"]
        except tomllib.TOMLDecodeError:
            params[key.strip()] = value  # a bare word, e.g. --param gradient=sign
        if not sep or not key.strip():
            raise ConfigError(f"--param takes NAME=VALUE, got {item!r}")
    return params | gradient(args)


def gradient(args: argparse.Namespace) -> dict[str, str]:
    """--gradient as a detector setting, for the detectors that have it."""
    if not getattr(args, "gradient", None):
        return {}
    from .detectors import detector_class

    if "gradient" not in detector_class(args.method).settings:
        raise ConfigError(f"--gradient is a setting of the leaveout detector, not of {args.method}")
    return {"gradient": args.gradient}


def note(args: argparse.Namespace, text: str) -> None:
    """A progress line, on standard error (standard output may carry a CSV)."""
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {value}")
    return value


def add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="where data sets are looked for (default: $LEAVEOUT_DATA, else ~/.cache/leaveout)",
    )


def add_param(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="override any setting of the detector (e.g. k=10 for knn, percentile=95 for react; "
        "`leaveout detectors` lists them); repeatable",
    )


def add_method(p: argparse.ArgumentParser, what: str, auto: bool = True) -> None:
    p.add_argument(
        "--method",
        default="leaveout",
        choices=[*list_detectors(), *(["auto"] if auto else [])],
        help=f"the detector to {what} (`leaveout detectors` lists them)"
        + ("; auto: the one `leaveout calibrate --select auto` chose" if auto else ""),
    )


def add_protocol(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--split",
        choices=SPLIT_RULES,
        default="seeded",
        help="tuning/reporting split of every set: seeded (by pixel content, stratified by class; "
        "no row order matters) or odin-first (the first 1000, for the official CIFAR order only)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split and of the bootstrap")
    p.add_argument(
        "--max-images",
        type=positive_int,
        default=None,
        help="score at most this many images per set",
    )
    p.add_argument(
        "--resamples", type=positive_int, default=1000, help="bootstrap resamples per interval"
    )


def add_scoring(p: argparse.ArgumentParser, gradient_option: bool = True) -> None:
    if gradient_option:
        p.add_argument(
            "--gradient",
            choices=list(OBJECTIVES),
            default=None,
            help="leaveout only: the input step's gradient, entropy (the paper) or odin "
            "(cross-entropy with the predicted label); default: the calibrated one, else entropy",
        )
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per forward pass")
    p.add_argument(
        "--amp",
        choices=SCORING_AMP,
        default="none",
        help="bf16: the networks' passes in bfloat16 autocast (faster on CPUs with AMX and on "
        "GPUs; the scores are still computed in float64 from the logits)",
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")
    add_data_root(p)


# --- the parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="leaveout",
        description="OOD detection with an ensemble of self-supervised leave-out classifiers "
        "(Vyas et al., ECCV 2018)",
        formatter_class=HelpFormatter,
        epilog=examples(
            "leaveout demo",
            "leaveout train --preset cpu-cifar10 --data-root ../shared/data --out runs/c10",
            "leaveout evaluate runs/c10 --data-root ../shared/data",
            "leaveout score runs/c10 my_photos/ --out scores.csv",
        ),
    )
    parser.add_argument("--version", action="version", version=f"leaveout {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, *lines: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=examples(*lines),
            formatter_class=HelpFormatter,
        )

    p = command(
        "data",
        "list the known data sets and where they are looked for, or describe one",
        "leaveout data --data-root ../shared/data --verify",
        "leaveout data cifar10 --split train --data-root ../shared/data",
        "leaveout data my_photos/",
    )
    p.add_argument("name", nargs="?", help="describe this set (a name or a path) instead")
    p.add_argument("--split", default=None, help="train or test (CIFAR; default test)")
    p.add_argument("--verify", action="store_true", help="check archive and npz checksums")
    add_data_root(p)
    p.set_defaults(func=cmd_data)

    p = command(
        "download",
        "fetch a set's official archive into the data root and check its MD5",
        "leaveout download cifar10",
        "leaveout download lsun_crop --source /mnt/mirror/LSUN.tar.gz",
    )
    p.add_argument(
        "name", choices=[n for n, i in datasets.DATASETS.items() if i.archive], help="the set"
    )
    p.add_argument("--source", help="a mirror URL or a local copy of the archive to use instead")
    p.add_argument("--force", action="store_true", help="download again even if present")
    add_data_root(p)
    p.set_defaults(func=cmd_download)

    p = command(
        "pack",
        "decode a set once into a packed folder that every command reads batch by batch",
        "leaveout pack cifar10 --split train --data-root ../shared/data   # found there afterwards",
        "leaveout pack my_photos/ packed/photos --size 64 64",
        "leaveout train --preset digits --data packed/photos --set data.image_size=64 --out runs/p",
    )
    p.add_argument("source", help="a named set, or a folder, archive or .npz of images")
    p.add_argument(
        "out_dir",
        nargs="?",
        type=Path,
        help="the packed folder (default for a named set: packed/NAME[-SPLIT] under the data root)",
    )
    p.add_argument("--split", default=None, help="train or test (CIFAR; default test)")
    p.add_argument(
        "--size",
        type=int,
        nargs="+",
        metavar=("H", "W"),
        help="image size (default: as stored; files 32)",
    )
    p.add_argument("--resize", default="shorter-side", choices=RESIZE_RULES, help="resize rule")
    p.add_argument(
        "--layout", default="auto", choices=["auto", "classes", "flat"], help="folder layout"
    )
    p.add_argument("--skip-corrupt", action="store_true", help="skip unreadable images")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_data_root(p)
    p.set_defaults(func=cmd_pack)

    p = command(
        "train",
        "train the leave-out ensemble (or a standard classifier) into a run directory",
        "leaveout train --preset cpu-cifar10 --data-root ../shared/data --out runs/c10",
        "leaveout train --preset cpu-cifar10 --mode standard --out runs/c10-standard",
        'leaveout train --preset digits --set data.dataset="my_classes/" --out runs/mine',
        "leaveout train --preset cpu-cifar10 --member 2 --out runs/c10   # one member as its own job",
        "leaveout train --preset cpu-cifar10 --workers 2 --out runs/c10  # two members at a time",
    )
    p.add_argument(
        "--preset", default=None, help=f"settings to start from: {', '.join(list_presets())}"
    )
    p.add_argument("--config", type=Path, help="a TOML file of settings applied over the preset")
    p.add_argument(
        "--data", help="the training set: a name, a folder, archive, npz or packed folder"
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override one setting (a TOML value), e.g. train.epochs=3; repeatable",
    )
    p.add_argument("--out", type=Path, required=True, help="the run directory (created or resumed)")
    p.add_argument(
        "--mode", choices=["leaveout", "standard"], help="shortcut for --set train.mode=..."
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--member", type=int, help="train only this member (members can run as separate jobs)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="train this many members side by side, each in its own process with an equal share "
        "of the threads (small networks on a CPU: docs/benchmarks.md)",
    )
    p.add_argument(
        "--force", action="store_true", help="continue a run directory whose settings differ"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_data_root(p)
    p.set_defaults(func=cmd_train)

    p = command(
        "status",
        "show each member of a run: done, training, stopped, failed, missing, or missing weights",
        "leaveout status runs/c10",
    )
    p.add_argument("run_dir", type=Path, help="the run directory")
    p.set_defaults(func=cmd_status)

    p = command(
        "calibrate",
        "choose a detector's settings and threshold on validation data (saved in the run)",
        "leaveout calibrate runs/c10 --data-root ../shared/data          # left-out classes",
        "leaveout calibrate runs/c10 --method odin --also runs/c10-standard",
        "leaveout calibrate runs/c10 --ood isun --criterion auroc --tpr 0.9",
        "leaveout calibrate runs/c10 --select auto   # every detector; keeps the best",
    )
    p.add_argument("run_dir", type=Path, help="the run directory")
    add_method(p, "calibrate", auto=False)
    p.add_argument(
        "--select",
        choices=["auto"],
        help="auto: calibrate every detector on the left-out classes and keep the best by "
        "--criterion (no OOD data; `--method auto` then uses it)",
    )
    p.add_argument(
        "--ood",
        help="validate on this OOD set's tuning part against the ID test tuning part "
        "(default: each member's own left-out classes, no OOD data)",
    )
    p.add_argument(
        "--criterion",
        default="fpr95",
        choices=CRITERIA,
        help="what the grid search minimises (ties: AUROC)",
    )
    p.add_argument(
        "--tpr",
        type=fraction,
        default=0.95,
        help="the threshold keeps this fraction of ID validation images",
    )
    p.add_argument(
        "--max-images",
        type=positive_int,
        default=DEFAULT_CALIBRATION_IMAGES,
        help="at most this many validation images per side",
    )
    p.add_argument(
        "--split",
        choices=SPLIT_RULES,
        default="seeded",
        help="with --ood: how the tuning parts are drawn (see `leaveout evaluate --help`)",
    )
    p.add_argument(
        "--also",
        type=Path,
        nargs="*",
        default=[],
        help="apply the chosen settings to these runs too (e.g. a standard classifier)",
    )
    add_scoring(p)
    p.set_defaults(func=cmd_calibrate)

    p = command(
        "evaluate",
        "metrics, tables and plots of a detector against OOD sets (ODIN's protocol)",
        "leaveout evaluate runs/c10 --data-root ../shared/data",
        "leaveout evaluate runs/c10-standard --method odin --ood tiny_imagenet_crop uniform",
        "leaveout evaluate runs/demo --ood unseen my_ood_folder/ --max-images 500",
    )
    p.add_argument("run_dir", type=Path, help="the run directory")
    p.add_argument(
        "--ood",
        nargs="+",
        default=DEFAULT_OOD,
        help="OOD sets: names, paths, or 'unseen' (the classes a run held out)",
    )
    add_method(p, "evaluate")
    p.add_argument("--temperature", type=float, help="override the calibrated temperature T")
    add_param(p)
    p.add_argument(
        "--epsilon", type=float, help="override the calibrated input step eps (pixel units)"
    )
    p.add_argument(
        "--ood-positive",
        action="store_true",
        help="FPR95 with OOD as the positive class (the pytorch-ood/OpenOOD convention)",
    )
    add_protocol(p)
    p.add_argument(
        "--out", type=Path, help="report folder (default: RUN_DIR/eval/<method>[-settings])"
    )
    add_scoring(p)
    p.set_defaults(func=cmd_evaluate)

    p = command(
        "compare",
        "two detectors on the same images: AUROC and FPR95 differences with paired intervals",
        "leaveout compare runs/c10 runs/c10-standard:odin --data-root ../shared/data",
        "leaveout compare runs/c10:leaveout runs/c10:mahalanobis --ood tiny_imagenet_crop uniform",
    )
    p.add_argument("first", help="RUN_DIR[:METHOD] (method default: leaveout)")
    p.add_argument("second", help="RUN_DIR[:METHOD]; its run must have the same ID test images")
    p.add_argument(
        "--ood", nargs="+", default=DEFAULT_OOD, help="OOD sets: names, paths, or 'unseen'"
    )
    p.add_argument(
        "--ood-positive",
        action="store_true",
        help="FPR95 with OOD as the positive class (the pytorch-ood/OpenOOD convention)",
    )
    add_protocol(p)
    p.add_argument("--out", type=Path, help="report folder (default: FIRST_RUN/eval/compare-...)")
    add_scoring(p, gradient_option=False)
    p.set_defaults(func=cmd_compare)

    p = command(
        "score",
        "score image files, folders, archives or npz files: CSV or JSON with a decision per image",
        "leaveout score runs/c10 photo.jpg my_photos/ more.zip",
        "leaveout score runs/c10 my_photos/ --out scores.json --tpr 0.9",
        "leaveout score runs/c10 images.npz --method energy --threshold 7.5 --out scores.csv",
    )
    p.add_argument("run_dir", type=Path, help="the run directory")
    p.add_argument(
        "paths", nargs="+", help="image files, folders, .tar/.tar.gz/.zip archives, .npz arrays"
    )
    add_method(p, "score with")
    add_param(p)
    p.add_argument(
        "--out",
        type=Path,
        help="write here: .json for JSON, anything else CSV (default: CSV on stdout)",
    )
    decision = p.add_mutually_exclusive_group()
    decision.add_argument(
        "--tpr",
        type=fraction,
        help="flag OOD below the threshold that keeps this fraction of ID validation images",
    )
    decision.add_argument("--threshold", type=float, help="flag OOD below this score")
    p.add_argument(
        "--skip-corrupt", action="store_true", help="skip unreadable images (counted in one line)"
    )
    p.add_argument(
        "--resize",
        choices=RESIZE_RULES,
        help="how images reach the network's size (default: the run's data.resize)",
    )
    add_scoring(p)
    p.set_defaults(func=cmd_score)

    p = command(
        "detectors", "list the registered detectors and what they search", "leaveout detectors"
    )
    p.set_defaults(func=cmd_detectors)

    p = command(
        "demo",
        "train, calibrate and evaluate on the embedded digits (about a minute on two cores)",
        "leaveout demo",
        "leaveout demo --out /tmp/demo --quiet",
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="the run directory")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
    return parser


def show_warning(
    message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any
) -> None:
    """Warnings as one line each, without source lines."""
    print(f"warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    with warnings.catch_warnings():
        warnings.simplefilter("always", LeaveoutWarning)
        warnings.showwarning = show_warning
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
