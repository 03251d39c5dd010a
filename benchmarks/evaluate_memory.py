"""Peak memory (RSS) of `leaveout evaluate` on CIFAR-10 test + two OOD sets at batch 256.

Runs the command in a child process on a copy of a trained run directory without its score
cache (RUN/cache/) and reports (RUN/eval/), so everything is scored, and reports the child's peak
resident memory next to a reference child that only loads the same datasets into memory.
Target: under 3 GB.

    python benchmarks/evaluate_memory.py RUN_DIR [--data-root ../shared/data] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from leaveout.reports import markdown_table

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
OOD = ["tiny_imagenet_crop", "tiny_imagenet_resize"]
LOAD_ONLY = (
    "import sys; from leaveout.data import load_dataset as L; r = sys.argv[1]; "
    "d = [L('cifar10', 'train', r), L('cifar10', 'test', r)] + [L(n, root=r) for n in sys.argv[2:]]"
)


def peak_rss_mb(command: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of a child process (alone: run children one at a time)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-root", default=str(SHARED))
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    # the reference first: ru_maxrss of children is a running maximum over all of them
    ref_mb, ref_s = peak_rss_mb([sys.executable, "-c", LOAD_ONLY, args.data_root, *OOD])
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(
            args.run_dir,
            run,
            ignore=shutil.ignore_patterns("eval", "cache", "checkpoint.safetensors"),
        )
        command = [
            sys.executable,
            "-m",
            "leaveout",
            "evaluate",
            str(run),
            "--method",
            "leaveout",
            "--ood",
            *OOD,
            "--data-root",
            args.data_root,
            "--batch-size",
            str(args.batch_size),
            "--quiet",
        ]
        eval_mb, eval_s = peak_rss_mb(command)
    rows = [
        {
            "process": "load the datasets only (reference)",
            "peak RSS MB": f"{ref_mb:.0f}",
            "seconds": f"{ref_s:.0f}",
        },
        {
            "process": f"leaveout evaluate, batch {args.batch_size}",
            "peak RSS MB": f"{eval_mb:.0f}",
            "seconds": f"{eval_s:.0f}",
        },
    ]
    print(markdown_table(rows, ["process", "peak RSS MB", "seconds"]))
    print(f"evaluate / reference: {eval_mb / ref_mb:.2f}; under 3 GB: {eval_mb < 3072}")


if __name__ == "__main__":
    main()
