"""Bootstrap intervals: the vectorised resampling against a loop over the same resamples.

Both compute the five metrics on every resample of 9,000 ID + 9,000 OOD scores (the size of a
CIFAR-10 reporting part against a 10,000-image OOD set); the loop is timed on a few resamples
and its per-resample time scaled. Target: the vectorised 1,000 resamples under 2 s.

    python benchmarks/bootstrap.py [--n 9000] [--resamples 1000] [--loop 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from leaveout.metrics import bootstrap_metrics, ood_metrics
from leaveout.reports import markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=9000, help="ID and OOD scores each")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--loop", type=int, default=20, help="resamples timed in the loop")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    ids, oods = rng.normal(1, 1, args.n), rng.normal(0, 1, args.n)

    fast = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        bootstrap_metrics(ids, oods, resamples=args.resamples)
        fast.append(time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(args.loop):
        ood_metrics(ids[rng.integers(0, args.n, args.n)], oods[rng.integers(0, args.n, args.n)])
    loop = (time.perf_counter() - start) / args.loop * args.resamples
    best = min(fast)
    rows = [
        {
            "computation": f"vectorised, {args.resamples} resamples",
            "seconds": f"{best:.2f}",
            "loop / this": f"{loop / best:.1f}",
        },
        {
            "computation": f"loop of ood_metrics (scaled from {args.loop})",
            "seconds": f"{loop:.2f}",
            "loop / this": "1.0",
        },
    ]
    print(markdown_table(rows, ["computation", "seconds", "loop / this"]))
    print(f"\nvectorised under 2 s: {'yes' if best < 2 else 'NO'} ({args.n} + {args.n} scores)")


if __name__ == "__main__":
    main()
