"""Scoring throughput of the leave-out ensemble (K members, input step), same process.

ours:        LeaveOutEnsemble.score: batched, input gradient only (torch.autograd.grad), weights
             frozen; the forward pass that gives the input gradient also gives the logits.
naive:       the same score written as ODIN's code does it: one member at a time over the data,
             parameter gradients enabled and accumulated by loss.backward(), at batch 1 and 128.
bare 3 fwd:  three plain forward passes per member on the same batches (no gradient at all),
             the floor that one forward + backward + forward costs at least.

    python benchmarks/scoring.py [--run RUN_DIR] [--images 512] [--batch 128]
Without --run, K=5 freshly initialised resnet8 members (the cpu-cifar10 network) are used.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from leaveout.batches import Normalization
from leaveout.losses import entropy
from leaveout.models import create_model
from leaveout.reports import markdown_table
from leaveout.scoring import LeaveOutEnsemble, member_score

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
T, EPS = 1000.0, 0.002


def test_images(n: int) -> np.ndarray:
    path = SHARED / "cifar10" / "test.npz"
    if path.is_file():
        with np.load(path) as arrays:
            return arrays["images"][np.random.default_rng(0).permutation(10_000)[:n]]
    return np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def fresh_ensemble(k: int) -> LeaveOutEnsemble:
    torch.manual_seed(0)
    members = [
        create_model("resnet8", 8)
        .to(memory_format=torch.channels_last)
        .eval()
        .requires_grad_(False)
        for _ in range(k)
    ]
    return LeaveOutEnsemble(members, [str(i) for i in range(10)], Normalization())


def naive_scores(ensemble: LeaveOutEnsemble, x: torch.Tensor, batch: int) -> np.ndarray:
    std = torch.tensor(ensemble.normalization.std).view(1, 3, 1, 1)
    total = torch.zeros(len(x))
    for member in ensemble.members:
        member.requires_grad_(True)  # as in ODIN's code: gradients flow into the weights too
        for start in range(0, len(x), batch):
            xb = x[start : start + batch].clone().requires_grad_(True)
            loss = entropy(member(xb) / T).sum()
            loss.backward()
            stepped = xb.detach() - EPS * torch.sign(xb.grad) / std
            total[start : start + batch] += member_score(member(stepped) / T).detach()
        member.zero_grad(set_to_none=True)
        member.requires_grad_(False)
    return total.numpy()


@torch.no_grad()
def bare_forwards(ensemble: LeaveOutEnsemble, x: torch.Tensor, batch: int) -> None:
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        for member in ensemble.members:
            for _ in range(3):
                member(xb)


def rate(fn, n: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="a run directory (default: fresh resnet8 members)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batch1-images", type=int, default=64, help="images for the batch-1 run")
    args = parser.parse_args()

    ensemble = LeaveOutEnsemble.load(args.run) if args.run else fresh_ensemble(args.k)
    images = test_images(args.images)
    x = ensemble.normalization(torch.from_numpy(images)).contiguous()
    ours = ensemble.score(images, T, EPS, batch_size=args.batch)
    naive = naive_scores(ensemble, x, args.batch)
    assert np.allclose(ours, naive, rtol=1e-4, atol=1e-4), (
        "the naive version computes another score"
    )

    n1 = args.batch1_images
    results = {
        f"ours (batch {args.batch})": rate(
            lambda: ensemble.score(images, T, EPS, batch_size=args.batch), len(x)
        ),
        f"naive (batch {args.batch})": rate(lambda: naive_scores(ensemble, x, args.batch), len(x)),
        "naive (batch 1)": rate(lambda: naive_scores(ensemble, x[:n1], 1), n1, repeats=1),
        f"bare 3 forwards/member (batch {args.batch})": rate(
            lambda: bare_forwards(ensemble, x, args.batch), len(x)
        ),
    }
    reference = results[f"ours (batch {args.batch})"]
    rows = [
        {"computation": name, "images/s": f"{value:.0f}", "ours / this": f"{reference / value:.2f}"}
        for name, value in results.items()
    ]
    print(
        f"K = {ensemble.k} members, T = {T:g}, eps = {EPS}, {len(x)} images, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(markdown_table(rows, ["computation", "images/s", "ours / this"]))


if __name__ == "__main__":
    main()
