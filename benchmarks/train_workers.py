"""Training images/s of members side by side in worker processes against one after the other here.

reference:    this process, all its threads: member 0's steps, then member 1's.
side by side: `workers.run_in_workers`: each worker trains one member on its share of the threads;
              the workers start their timed steps together (a barrier) and the rate is all images
              over the time from that start to the last worker's end.
Both run the full training step (batches drawn from the in-memory uint8 tensors, crop, flip,
normalisation, leave-out loss, backward, SGD step), after a few warm-up steps.

    python benchmarks/train_workers.py [--preset cpu-cifar10] [--workers 2] [--steps 40]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path

import torch

from leaveout import training as tr
from leaveout.config import resolve
from leaveout.data import Normalization, load_run_sets
from leaveout.devices import keep_freed_memory
from leaveout.partitions import LeaveOutPartition
from leaveout.reports import markdown_table
from leaveout.workers import run_in_workers

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
WARM_UP = 3


def member_steps(preset: str, data_root: str, member: int, steps: int, barrier=None) -> tuple:
    """(images, start, end) of `steps` timed training steps of `member`."""
    cfg = resolve(preset)
    sets = load_run_sets(cfg.data, cfg.train.seed, data_root)
    partition = LeaveOutPartition(sets["train"].num_classes, cfg.train.k, cfg.train.partition_seed)
    norm = Normalization.named(cfg.data.normalization, sets["train"].images)
    data = tr.member_data(sets, partition, member, torch.device("cpu"))
    model = tr.build_member_model(cfg, data.num_classes, member, data.train_images, norm)
    model = model.to(memory_format=torch.channels_last)
    optimizer = tr.make_optimizer(cfg, model)
    batches = tr.epoch_batches(tr.make_stream(cfg, data, norm, member), 0)
    images = 0
    for step in range(WARM_UP + steps):
        if step == WARM_UP:
            if barrier is not None:
                barrier.wait()
            start = time.time()
        x, y, x_out = next(batches)
        tr.train_step(model, optimizer, x, y, x_out, cfg).loss.item()
        if step >= WARM_UP:
            images += len(x) + len(x_out)
    return images, start, time.time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="cpu-cifar10")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per member")
    parser.add_argument("--data-root", default=str(SHARED))
    args = parser.parse_args()
    keep_freed_memory()  # as the command line does
    members = range(args.workers)

    reference = [member_steps(args.preset, args.data_root, m, args.steps) for m in members]
    ref_rate = sum(r[0] for r in reference) / sum(r[2] - r[1] for r in reference)

    with multiprocessing.get_context("spawn").Manager() as manager:
        barrier = manager.Barrier(args.workers)
        calls = [
            (member_steps, (args.preset, args.data_root, m, args.steps, barrier), {})
            for m in members
        ]
        side = run_in_workers(calls, args.workers)
    side_rate = sum(r[0] for r in side) / (max(r[2] for r in side) - min(r[1] for r in side))

    threads = torch.get_num_threads()
    print(
        f"preset {args.preset}, {args.workers} members x {args.steps} steps, "
        f"torch {torch.__version__}, {threads} threads"
    )
    rows = [
        {"training": f"one after the other, {threads} threads", "images/s": f"{ref_rate:.0f}"},
        {
            "training": f"side by side, {args.workers} workers x {max(1, threads // args.workers)}"
            " thread(s)",
            "images/s": f"{side_rate:.0f}",
        },
    ]
    for row in rows:
        row["ratio"] = f"{float(row['images/s']) / ref_rate:.2f}"
    print(markdown_table(rows, ["training", "images/s", "ratio"]))


if __name__ == "__main__":
    main()
