"""Images/s of the full training step against the bare step of the same model, same process.

full: batches drawn from the in-memory uint8 tensors by the training stream (index gather,
      random crop + flip, normalisation), the leave-out loss, backward, SGD step, the loss read
      back (as the training loop does for its NaN guard).
bare: the same train_step on pre-made normalised tensors of the same batch sizes.
frozen (airnet): the bare step with the whitening bias frozen, as train.whiten_bias_epochs
      leaves it after its epochs (the first convolution's input gradient is skipped).
compiled (--compile): the bare step through torch.compile(model) (inductor); the first compiled
      step's whole time (compiling plus one step) is reported, with the steps that earn it back.
Blocks of each are interleaved, their order reversed every round (full-bare-frozen,
frozen-bare-full, ...), so a drift in the machine's speed falls on all alike. The table gives the
median rates and the median of the per-round ratios to bare with their range; the target is full
>= 95% of bare.

    python benchmarks/train_step.py [--preset cpu-cifar10] [--set key=value ...] [--steps 20]
        [--default-malloc] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from leaveout import training as tr
from leaveout.config import resolve
from leaveout.data import ImageSet, Normalization, load_run_sets
from leaveout.devices import keep_freed_memory
from leaveout.errors import DatasetNotFoundError
from leaveout.partitions import LeaveOutPartition
from leaveout.reports import markdown_table

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def cifar_like(cfg, data_root):
    try:
        return load_run_sets(cfg.data, cfg.train.seed, data_root)
    except DatasetNotFoundError:
        pass
    gen = torch.Generator().manual_seed(0)  # no real data: random images of CIFAR's shape
    images = torch.randint(0, 256, (50_000, 32, 32, 3), dtype=torch.uint8, generator=gen).numpy()
    labels = torch.arange(50_000).remainder(10).numpy()
    data = ImageSet(images, labels, tuple(map(str, range(10))), "random")
    return {"train": data, "val": data.subset(range(1000))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="cpu-cifar10")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block")
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--data-root", default=str(SHARED))
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="leave glibc's malloc as it is (no devices.keep_freed_memory), to measure what it gives",
    )
    parser.add_argument(
        "--compile", action="store_true", help="also time the bare step of torch.compile(model)"
    )
    args = parser.parse_args()
    if not args.default_malloc:
        keep_freed_memory()  # as the command line does

    cfg = resolve(args.preset, overrides=args.set)
    device = torch.device(args.device)
    parts = cifar_like(cfg, args.data_root)
    partition = (
        None
        if cfg.train.mode == "standard"
        else LeaveOutPartition(parts["train"].num_classes, cfg.train.k, cfg.train.partition_seed)
    )
    norm = Normalization.named(cfg.data.normalization, parts["train"].images)
    data = tr.member_data(parts, partition, 0, device)
    model = tr.build_member_model(cfg, data.num_classes, 0, data.train_images, norm).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = tr.make_optimizer(cfg, model)
    stream = tr.make_stream(cfg, data, norm, 0)
    x0, y0, out0 = next(tr.epoch_batches(stream, 0))
    fixed = (x0.clone(), y0.clone(), None if out0 is None else out0.clone())
    per_step = len(x0) + (0 if out0 is None else len(out0))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def full_block(epoch: int) -> float:
        batches = tr.epoch_batches(stream, epoch)
        sync()
        start = time.perf_counter()
        for _ in range(args.steps):
            x, y, x_out = next(batches)
            tr.train_step(model, optimizer, x, y, x_out, cfg).loss.item()
        sync()
        return args.steps * per_step / (time.perf_counter() - start)

    def bare_steps(net: torch.nn.Module) -> float:
        sync()
        start = time.perf_counter()
        for _ in range(args.steps):
            tr.train_step(net, optimizer, *fixed, cfg).loss.item()
        sync()
        return args.steps * per_step / (time.perf_counter() - start)

    def bare_block(_: int) -> float:
        return bare_steps(model)

    def frozen_bias_block(epoch: int) -> float:
        model.train_whitening_bias(False)
        rate = bare_block(epoch)
        model.train_whitening_bias(True)
        return rate

    blocks = {"full": full_block, "bare": bare_block}
    if getattr(model, "whitened", False):  # airnet: the step once its whitening bias stops
        blocks["frozen"] = frozen_bias_block
    compile_seconds = None
    if args.compile:
        compiled = torch.compile(model)

        def compiled_block(_: int) -> float:
            return bare_steps(compiled)

        start = time.perf_counter()
        tr.train_step(compiled, optimizer, *fixed, cfg).loss.item()  # compiles
        compile_seconds = time.perf_counter() - start
        blocks["compiled"] = compiled_block
    for block in blocks.values():  # warm-up
        block(0)
    rates: dict[str, list[float]] = {name: [] for name in blocks}
    for number in range(args.blocks):
        order = list(blocks) if number % 2 == 0 else list(reversed(blocks))
        for name in order:
            rates[name].append(blocks[name](number + 1))

    def against_bare(name: str) -> str:
        ratios = [a / b for a, b in zip(rates[name], rates["bare"])]
        return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"

    column = "/ bare, per round: median (range)"
    labels = {
        "bare": "bare (pre-made tensors)",
        "full": "full (stream + augmentation)",
        "frozen": "bare, whitening bias frozen (train.whiten_bias_epochs)",
        "compiled": "bare, torch.compile (inductor)",
    }
    rows = [
        {
            "step": labels[name],
            "images/s": f"{statistics.median(rates[name]):.0f}",
            column: "" if name == "bare" else against_bare(name),
        }
        for name in ("bare", "full", "frozen", "compiled")
        if name in rates
    ]
    print(
        f"model {cfg.model.name}, amp {cfg.train.amp}, batch {len(x0)} ID + "
        f"{0 if out0 is None else len(out0)} left-out, "
        f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"malloc {'default' if args.default_malloc else 'keeps freed memory'}"
    )
    print(markdown_table(rows, list(rows[0])))
    if compile_seconds is not None:
        print(
            compile_note(
                compile_seconds,
                statistics.median(rates["bare"]),
                statistics.median(rates["compiled"]),
                per_step,
            )
        )


def compile_note(seconds: float, bare_rate: float, compiled_rate: float, per_step: int) -> str:
    """The first compiled step's time, and how many steps the compiled step needs to repay it."""
    saved = per_step / bare_rate - per_step / compiled_rate
    repaid = f"repaid after {seconds / saved:.0f} steps" if saved > 0 else "never repaid"
    return f"first compiled step (compiling): {seconds:.1f} s; {repaid}"


if __name__ == "__main__":
    main()
