"""Independent calls run side by side in worker processes that share this machine's threads.

A small network does not keep several cores busy with one process: on the 2-core machine of
docs/benchmarks.md two single-thread processes trained 1.14x (glibc's default malloc) to 1.42x
(`devices.keep_freed_memory`) the images per second of one two-thread process.
`training.train_runs(..., workers=2)` uses this to train members side by side.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

from .devices import keep_freed_memory

Call = tuple[Callable[..., Any], tuple, dict]

SLOT = 0  # this process's worker number (0 in the main process): one progress-bar line each


def worker_slot() -> int:
    """The worker number of this process: its progress bars take this line of the terminal."""
    return SLOT


def start_worker(slots: Any, threads: int) -> None:
    global SLOT
    SLOT = slots.get()
    torch.set_num_threads(threads)
    keep_freed_memory()


def run_in_workers(calls: Sequence[Call], workers: int, threads: int | None = None) -> list[Any]:
    """Each (function, args, kwargs) called in one of `workers` spawned processes, `threads`
    (default: this process's torch threads) split evenly among them; the results in call order.

    With one worker or one call everything runs here, in this process. The first failure is
    raised here once the calls already running have ended; calls not yet started are cancelled.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1 or len(calls) <= 1:
        return [function(*args, **kwargs) for function, args, kwargs in calls]
    workers = min(workers, len(calls))
    per_worker = max(1, (threads or torch.get_num_threads()) // workers)
    context = multiprocessing.get_context("spawn")  # no forked copy of torch's thread pools
    slots = context.Queue()
    for slot in range(workers):
        slots.put(slot)
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=start_worker, initargs=(slots, per_worker)
    ) as pool:
        futures = [pool.submit(function, *args, **kwargs) for function, args, kwargs in calls]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise
