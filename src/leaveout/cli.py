"""The `leaveout` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import datasets
from .config import list_presets
from .errors import LeaveoutError
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
    print(summary_table(summaries))
    print(f"run directory: {args.out}")
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
    return parser


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
