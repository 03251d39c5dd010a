"""Scoring throughput of the leave-out ensemble (K members, input step), same process.

ours:        the "leaveout" detector's score_samples: batched, input gradient only
             (torch.autograd.grad), weights frozen; the forward pass that gives the input
             gradient also gives the logits.
naive:       the same score written as ODIN's code does it: one member at a time over the data,
             parameter gradients enabled and accumulated by loss.backward(), at batch 1 and 128.
bare 3 fwd:  three plain forward passes per member on the same batches (no gradient at all),
             the floor that one forward + backward + forward costs at least.

    python benchmarks/scoring.py [--run RUN_DIR] [--images 512] [--batch 128]
With --run, the run's trained members (best weights) are timed. Without it, K=5 freshly
initialised resnet8 members (the cpu-cifar10 network) are used: their ratios are not those of
trained weights (the input step and the score cost the same, but the logits differ).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from leaveout.detectors import create_detector
from leaveout.detectors.leaveout import member_score
from leaveout.ensemble import LeaveOutEnsemble
from leaveout.losses import entropy
from leaveout.models import create_model
from leaveout.partitions import LeaveOutPartition
from leaveout.reports import markdown_table

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
T, EPS = 1000.0, 0.002


def test_images(n: int, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """n CIFAR-10 test images (random ones of `size` when the copy is missing or the network
    takes another size)."""
    path = SHARED / "cifar10" / "test.npz"
    if path.is_file() and tuple(size) == (32, 32):
        with np.load(path) as arrays:
            return arrays["images"][np.random.default_rng(0).permutation(10_000)[:n]]
    return np.random.default_rng(0).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def fresh_ensemble(k: int) -> LeaveOutEnsemble:
    """K untrained resnet8 members over CIFAR-10's 10 classes (each leaving some out)."""
    torch.manual_seed(0)
    partition = LeaveOutPartition(10, k)
    members = [create_model("resnet8", partition.member_num_classes(m)) for m in range(k)]
    return LeaveOutEnsemble(members, [str(i) for i in range(10)], partition=partition)


def naive_scores(ensemble: LeaveOutEnsemble, x: torch.Tensor, batch: int) -> np.ndarray:
    std = ensemble.normalization.std_tensor()
    total = torch.zeros(len(x))
    for member in ensemble.members:
        member.requires_grad_(True)  # as in ODIN's code: gradients flow into the weights too
        for start in range(0, len(x), batch):
            xb = x[start : start + batch].clone().requires_grad_(True)
            loss = entropy(member(xb) / T).sum()
            loss.backward()
            stepped = xb.detach() - EPS * torch.sign(xb.grad) / std
            total[start : start + batch] += member_score(member(stepped), T).detach()
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
    parser.add_argument(
        "--run", type=Path, help="a trained run directory (default: fresh resnet8 members)"
    )
    parser.add_argument("--k", type=int, default=5, help="members (without --run)")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batch1-images", type=int, default=64, help="images for the batch-1 run")
    args = parser.parse_args()

    ensemble = LeaveOutEnsemble.load(args.run) if args.run else fresh_ensemble(args.k)
    detector = create_detector(
        "leaveout", ensemble, temperature=T, epsilon=EPS, batch_size=args.batch
    )
    images = test_images(args.images, ensemble.image_size)
    x = ensemble.normalization(torch.from_numpy(images)).contiguous()
    ours = detector.score_samples(images)
    naive = naive_scores(ensemble, x, args.batch)
    # ours: member scores in float64; naive: float32 throughout, as in ODIN's code. A member
    # score (max softmax - entropy, |s| <= log C) in float32 is off by a few 1e-7, the float32
    # sum of K of them by about 1e-6: allow 4e-6 per member (well below the spread of the
    # scores at T = 1000, about 5e-5 even for untrained weights).
    difference = float(np.abs(ours - naive).max())
    assert difference <= 4e-6 * ensemble.k, (
        f"the naive version computes another score (largest difference {difference:.2e})"
    )

    n1 = args.batch1_images
    results = {
        f"ours (batch {args.batch})": rate(lambda: detector.score_samples(images), len(x)),
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
    if args.run:
        print(f"trained weights of {args.run}")
    else:
        print(
            "these ratios are for untrained (freshly initialised) weights; pass --run RUN_DIR "
            "for the ratios of trained weights"
        )


if __name__ == "__main__":
    main()
