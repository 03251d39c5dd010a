"""Packed sets against in-memory arrays: training batches, and packing / reloading a folder.

1. Training batches on CIFAR-10's training split (the cpu-cifar10 recipe's member 0: its kept
   classes in batches of 256 with 64 left-out images, crop + flip, normalised): images/s of the
   in-memory tensors and of the packed set (in this process, and with 2 DataLoader workers), for
   the batches alone and for full airnet training steps (what `leaveout train` runs).
2. A 50,000-image folder of PNGs (CIFAR-10's training split written as files): decoding it
   (what every command does with a folder), packing it, and reloading the packed set (opening
   it, and reading all its pixels once).

Everything is timed in this process against the in-memory reference; ratios are what to read.

    python benchmarks/packed.py --data-root ../shared/data [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from leaveout import files
from leaveout.config import resolve
from leaveout.data import (
    load_dataset,
    load_images,
    load_packed,
    load_run_sets,
    pack_dataset,
)
from leaveout.data.npyfile import iter_chunks
from leaveout.data.transforms import Normalization
from leaveout.partitions import LeaveOutPartition
from leaveout.reports import markdown_table, replace_section
from leaveout.training import (
    build_member_model,
    make_optimizer,
    make_stream,
    member_data,
    train_step,
)

STEPS = 60


def member_streams(cfg, data_root: str, packed_root: Path) -> dict:
    """The member-0 streams of the in-memory and the packed training set."""
    partition = LeaveOutPartition(10, cfg.train.k, cfg.train.partition_seed)
    memory = load_run_sets(cfg.data, cfg.train.seed, data_root)
    packed = load_run_sets(cfg.data, cfg.train.seed, packed_root)
    assert packed["train"].is_packed and not memory["train"].is_packed
    norm = Normalization.named(cfg.data.normalization, memory["train"].images)
    cpu = torch.device("cpu")
    return {
        "memory": (member_data(memory, partition, 0, cpu), norm),
        "packed": (member_data(packed, partition, 0, cpu), norm),
    }


def batch_rate(cfg, data, norm, steps: int, model=None) -> float:
    """Images/s of the first `steps` batches (with training steps when a model is given)."""
    stream = make_stream(cfg, data, norm, 0)
    optimizer = None if model is None else make_optimizer(cfg, model)
    seen, started = 0, time.perf_counter()
    for step, (x, y, x_out) in enumerate(stream.epoch(0)):
        if model is not None:
            train_step(model, optimizer, x, y, x_out, cfg)
        seen += len(x) + (0 if x_out is None else len(x_out))
        if step + 1 == steps:
            break
    return seen / (time.perf_counter() - started)


def training_table(data_root: str, packed_root: Path) -> list[dict[str, str]]:
    cfg = resolve("cpu-cifar10")
    streams = member_streams(cfg, data_root, packed_root)
    rows = []
    for label, with_model in (("batches only", False), ("airnet training steps", True)):
        rates = {}
        for name, workers in (("memory", 0), ("packed", 0), ("packed", 2)):
            data, norm = streams[name]
            cfg.data.loader_workers = workers
            model = None
            if with_model:
                torch.manual_seed(0)
                model = build_member_model(cfg, data.num_classes, 0, data.train_images, norm)
                model = model.to(memory_format=torch.channels_last)
            steps = STEPS if with_model else 4 * STEPS
            batch_rate(cfg, data, norm, 3, model)  # warm-up
            rates[name, workers] = batch_rate(cfg, data, norm, steps, model)
        reference = rates["memory", 0]
        rows.append(
            {
                "measured": label,
                "in memory (img/s)": f"{reference:.0f}",
                "packed (img/s)": f"{rates['packed', 0]:.0f}",
                "packed / in memory": f"{rates['packed', 0] / reference:.2f}",
                "packed, 2 workers (img/s)": f"{rates['packed', 2]:.0f}",
                "2 workers / in memory": f"{rates['packed', 2] / reference:.2f}",
            }
        )
        print(rows[-1], flush=True)
    return rows


def write_png_folder(images: np.ndarray, labels: np.ndarray, classes, folder: Path) -> None:
    for i, (image, label) in enumerate(zip(images, labels)):
        target = folder / classes[label] / f"{i:05d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target)


def folder_table(data_root: str, work: Path) -> list[dict[str, str]]:
    train = load_dataset("cifar10", "train", data_root)
    folder = work / "cifar10-png"
    write_png_folder(train.images, train.labels, train.classes, folder)
    timings = {}
    started = time.perf_counter()
    decoded = load_images(folder, size=32)
    timings["decode the folder (every command, today)"] = time.perf_counter() - started
    started = time.perf_counter()
    packed_dir = pack_dataset(str(folder), work / "cifar10-packed", progress=False)
    timings["pack it once (`leaveout pack`)"] = time.perf_counter() - started
    started = time.perf_counter()
    packed = load_packed(packed_dir)
    timings["open the packed set"] = time.perf_counter() - started
    started = time.perf_counter()
    total = sum(int(chunk.sum(dtype=np.int64)) for chunk in iter_chunks(packed.images))
    timings["open it and read every pixel once"] = (
        time.perf_counter() - started + timings["open the packed set"]
    )
    assert total == int(decoded.images.sum(dtype=np.int64))
    reference = timings["decode the folder (every command, today)"]
    return [
        {
            "step": step,
            "seconds": f"{seconds:.2f}",
            "against decoding": f"{seconds / reference:.4f}",
        }
        for step, seconds in timings.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        packed_root = work / "root"
        for split in ("train", "test"):
            pack_dataset(
                str(Path(args.data_root) / "cifar10" / f"{split}.npz"),
                packed_root / "packed" / f"cifar10-{split}",
                progress=False,
            )
        training = training_table(args.data_root, packed_root)
        folder = folder_table(args.data_root, work)
    command = f"python benchmarks/packed.py --data-root {args.data_root}"
    body = "\n".join(
        [
            "## Packed sets",
            "",
            f"`{command}` ({time.strftime('%Y-%m-%d')}, this 2-core machine). Training batches: "
            "member 0 of the cpu-cifar10 recipe on CIFAR-10's training split (its 8 kept "
            "classes, batch 256 + 64 left-out images, crop + flip, normalised), "
            f"{4 * STEPS} batches alone or {STEPS} airnet training steps, after a warm-up. "
            "Packed: the same split packed from the npz copy; rows read by positioned reads in "
            "this process, or by 2 DataLoader worker processes.",
            "",
            markdown_table(training, list(training[0])),
            "",
            "A folder of CIFAR-10's 50,000 training images as PNG files (one folder per class):",
            "",
            markdown_table(folder, list(folder[0])),
        ]
    )
    text = args.out.read_text() if args.out.is_file() else ""
    files.write_text(args.out, replace_section(text, "packed", body))
    print(body)


if __name__ == "__main__":
    main()
