"""Scoring throughput of the leave-out ensemble (K members, input step), same process.

ours:        the "leaveout" detector's score_samples: batched, input gradient only
             (torch.autograd.grad), weights frozen; the forward pass that gives the input
             gradient also gives the logits. In float32 and with amp="bf16" (the networks'
             passes in bfloat16 autocast; the scores still float64 from the logits).
naive:       the same score written as ODIN's code does it: one member at a time over the data,
             parameter gradients enabled and accumulated by loss.backward(), at batch 1 and 128.
bare 3 fwd:  three plain forward passes per member on the same batches (no gradient at all),
             the floor that one forward + backward + forward costs at least; once with the
             members as trained and once with the BatchNorm-folded copies that ours runs
             (`ensemble.networks()`), the floor of ours itself.

    python benchmarks/scoring.py [--run runs/cpu-cifar10] [--data-root ../shared/data]
The run's trained members (best weights) are timed; a missing run is trained first with the
cpu-cifar10 preset (about 13 minutes on two cores). bf16 is also checked for quality: FPR95 and
AUROC on TinyImageNet-crop (reporting part) in float32 and bf16, at the calibrated T and eps.
A second table times freshly initialised members of the same network: their ratios are not
those of trained weights (the logits differ), which is why the first table is the one to read.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from leaveout import training
from leaveout.config import resolve
from leaveout.detectors import create_detector
from leaveout.detectors.leaveout import member_score
from leaveout.devices import keep_freed_memory
from leaveout.ensemble import LeaveOutEnsemble
from leaveout.evaluation import evaluate
from leaveout.losses import entropy
from leaveout.models import create_model
from leaveout.partitions import LeaveOutPartition
from leaveout.reports import markdown_table
from leaveout.rundir import RunDir

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
T, EPS = 1000.0, 0.002
OOD = "tiny_imagenet_crop"


def test_images(n: int, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """n CIFAR-10 test images (random ones of `size` when the copy is missing or the network
    takes another size)."""
    path = SHARED / "cifar10" / "test.npz"
    if path.is_file() and tuple(size) == (32, 32):
        with np.load(path) as arrays:
            return arrays["images"][np.random.default_rng(0).permutation(10_000)[:n]]
    return np.random.default_rng(0).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def fresh_ensemble(k: int, network: str) -> LeaveOutEnsemble:
    """K untrained members over CIFAR-10's 10 classes (each leaving some out)."""
    torch.manual_seed(0)
    partition = LeaveOutPartition(10, k)
    members = [create_model(network, partition.member_num_classes(m)) for m in range(k)]
    return LeaveOutEnsemble(members, [str(i) for i in range(10)], partition=partition)


def trained_ensemble(run_dir: Path, data_root: str) -> LeaveOutEnsemble:
    """The run's members; the run is trained with the cpu-cifar10 preset first when missing."""
    training.train(resolve("cpu-cifar10"), run_dir, data_root, "cpu")  # skips what is done
    return LeaveOutEnsemble.load(run_dir)


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
def bare_forwards(networks: list[torch.nn.Module], x: torch.Tensor, batch: int) -> None:
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        for member in networks:
            for _ in range(3):
                member(xb)


def rate(fn, n: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def timings(ensemble: LeaveOutEnsemble, images: np.ndarray, args: argparse.Namespace) -> str:
    """The table of rates and ratios for one ensemble."""
    detectors = {
        amp: create_detector(
            "leaveout", ensemble, temperature=T, epsilon=EPS, batch_size=args.batch, amp=amp
        )
        for amp in ("none", "bf16")
    }
    x = ensemble.normalization(torch.from_numpy(images)).contiguous()
    ours = detectors["none"].score_samples(images)
    naive = naive_scores(ensemble, x, args.batch)
    # ours: member scores in float64; naive: float32 throughout, as in ODIN's code. A member
    # score (max softmax - entropy, |s| <= log C) in float32 is off by a few 1e-7, the float32
    # sum of K of them by about 1e-6: allow 4e-6 per member (well below the spread of the
    # scores at T = 1000, about 5e-5 even for untrained weights).
    difference = float(np.abs(ours - naive).max())
    assert difference <= 4e-6 * ensemble.k, (
        f"the naive version computes another score (largest difference {difference:.2e})"
    )
    n1, b = args.batch1_images, args.batch
    results = {
        f"ours, float32 (batch {b})": rate(lambda: detectors["none"].score_samples(images), len(x)),
        f"ours, bf16 (batch {b})": rate(lambda: detectors["bf16"].score_samples(images), len(x)),
        f"naive (batch {b})": rate(lambda: naive_scores(ensemble, x, b), len(x)),
        "naive (batch 1)": rate(lambda: naive_scores(ensemble, x[:n1], 1), n1, repeats=1),
        f"bare 3 forwards/member, float32 (batch {b})": rate(
            lambda: bare_forwards(ensemble.members, x, b), len(x)
        ),
        f"bare 3 forwards/member, BatchNorm folded, float32 (batch {b})": rate(
            lambda: bare_forwards(ensemble.networks(), x, b), len(x)
        ),
    }
    naive_rate = results[f"naive (batch {b})"]
    bare_rate = results[f"bare 3 forwards/member, float32 (batch {b})"]
    rows = [
        {
            "computation": name,
            "images/s": f"{value:.0f}",
            "x naive (batch 128)": f"{value / naive_rate:.2f}",
            "/ bare 3 forwards": f"{value / bare_rate:.2f}",
        }
        for name, value in results.items()
    ]
    return markdown_table(rows, list(rows[0]))


def bf16_quality(run_dir: Path, data_root: str) -> str:
    """FPR95 and AUROC on TinyImageNet-crop in float32 and in bf16, at the calibrated T, eps."""
    rows = []
    for amp in ("none", "bf16"):
        result = evaluate(run_dir, [OOD], data_root, amp=amp, plots=False, progress=False)
        row = result["rows"][0]
        rows.append(
            {
                "scores": "float32" if amp == "none" else "bf16",
                "FPR95": f"{100 * row['FPR95']:.2f}",
                "AUROC": f"{100 * row['AUROC']:.2f}",
                "settings": ", ".join(
                    f"{k} {v:g}" for k, v in result["settings"].items() if isinstance(v, float)
                ),
                "seconds": f"{result['seconds']:.0f}",
            }
        )
    return markdown_table(rows, list(rows[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/cpu-cifar10"))
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batch1-images", type=int, default=64, help="images for the batch-1 run")
    parser.add_argument("--no-fresh", action="store_true", help="skip the fresh-weights table")
    args = parser.parse_args()
    keep_freed_memory()  # as the command line does

    ensemble = trained_ensemble(args.run, args.data_root)
    images = test_images(args.images, ensemble.image_size)
    print(
        f"K = {ensemble.k} members, T = {T:g}, eps = {EPS}, {len(images)} CIFAR-10 test images, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads\n"
    )
    print(f"Trained weights of {args.run}:\n")
    print(timings(ensemble, images, args))
    print(f"\nbf16 against float32 on {OOD} (reporting part, calibrated settings):\n")
    print(bf16_quality(args.run, args.data_root))
    if not args.no_fresh:
        network = RunDir(args.run).read_config().model.name
        print(f"\nFreshly initialised {network} members (ratios not those of trained weights):\n")
        print(timings(fresh_ensemble(ensemble.k, network), images, args))


if __name__ == "__main__":
    main()
