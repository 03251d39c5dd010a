"""One member of a run on its own validation split: a quick check of a training ingredient.

Prints the member's accuracy on its kept classes (with and without flip test-time
augmentation) and the paper's member score (max-softmax minus entropy at T, after an input step
of eps) on its kept vs its left-out validation classes: FPR95 and AUROC at a few (T, eps). Train
one member with `leaveout train ... --member M` and point this at the run; no test OOD set is
touched.

    python benchmarks/member_check.py RUN_DIR [--member 0] [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from leaveout.data import load_run_sets
from leaveout.detectors.leaveout import member_score
from leaveout.detectors.perturb import entropy_objective, stepped_logit_scores
from leaveout.metrics import ood_metrics
from leaveout.models import create_model, load_state
from leaveout.reports import markdown_table
from leaveout.rundir import RunDir

POINTS = [{"temperature": t, "epsilon": e} for t in (1.0, 1000.0) for e in (0.0, 0.002)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--member", type=int, default=0)
    parser.add_argument("--data-root", default="../shared/data")
    args = parser.parse_args()

    run = RunDir(args.run).require()
    cfg, info, partition = run.read_config(), run.read_info(), run.read_partition()
    assert partition is not None, f"{args.run} is not a leave-out run"
    m = args.member
    net = create_model(cfg.model.name, partition.member_num_classes(m), **cfg.model.kwargs())
    load_state(net, run.read_weights(m, "best"), run.weights_path(m, "best"))
    net.eval().requires_grad_(False)
    val = load_run_sets(cfg.data, cfg.train.seed, args.data_root)["val"]
    labels = partition.to_member_labels(m, val.labels)
    std = info.normalization.std_tensor()

    def score(logits: torch.Tensor, point: dict) -> torch.Tensor:
        return member_score(logits.double(), point["temperature"])

    scores, plain, flipped = [], [], []
    for start in range(0, len(val), 500):
        x = info.normalization(torch.from_numpy(val.images[start : start + 500]))
        scores.append(stepped_logit_scores(net, x, POINTS, std, score, entropy_objective).numpy())
        with torch.no_grad():
            probs = net(x).softmax(1)
            plain.append(probs.argmax(1).numpy())
            flipped.append((probs + net(x.flip(3)).softmax(1)).argmax(1).numpy())
    inside = labels >= 0
    all_scores = np.concatenate(scores, axis=1)
    accuracy = {
        name: 100 * np.mean(np.concatenate(p)[inside] == labels[inside])
        for name, p in (("plain", plain), ("flip", flipped))
    }
    print(
        f"{args.run} member {m}: accuracy on its kept classes {accuracy['plain']:.2f}% "
        f"({accuracy['flip']:.2f}% with flip test-time augmentation)\n"
    )
    rows = []
    for point, s in zip(POINTS, all_scores):
        metrics = ood_metrics(s[inside], s[~inside])
        rows.append(
            {
                "T": f"{point['temperature']:g}",
                "eps": f"{point['epsilon']:g}",
                "FPR95": f"{100 * metrics['FPR95']:.2f}",
                "AUROC": f"{100 * metrics['AUROC']:.2f}",
            }
        )
    print(markdown_table(rows, ["T", "eps", "FPR95", "AUROC"]))


if __name__ == "__main__":
    main()
