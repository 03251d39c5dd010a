"""Train and evaluate on a packed set with the process's address space capped: run by
test_packed.py in a subprocess, and imported by it to do the same in memory.

    python -m tests.data.limited_run PACKED_DIR RUN_DIR HEADROOM_BYTES SET_BYTES

The process first trains and evaluates a tiny in-memory run (so that torch's thread pools and
first allocations exist), then caps its address space at what it holds plus HEADROOM_BYTES,
checks that SET_BYTES can no longer be allocated, and trains and evaluates on PACKED_DIR. Prints
one JSON line: the metrics, the accuracy, the weights, and what the limit was.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from leaveout import training
from leaveout.config import resolve
from leaveout.evaluation import evaluate
from leaveout.files import read_safetensors
from leaveout.models import list_models, register_model
from leaveout.rundir import RunDir


class PooledLinear(nn.Module):
    """A linear layer on 4x4 average-pooled pixels: cheap enough to train on a large set."""

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.classifier = nn.Linear(16 * in_channels, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 4).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


if "pooled_linear" not in list_models():
    register_model("pooled_linear")(PooledLinear)


def train_and_evaluate(dataset: str, run_dir: Path) -> dict[str, Any]:
    cfg = resolve(
        "digits",
        overrides=[
            f"data.dataset={json.dumps(dataset)}",
            'model.name="pooled_linear"',
            'train.mode="standard"',
            "train.epochs=1",
            "train.batch_size=256",
            "train.eval_batch_size=256",
            "data.val_fraction=0.05",
            "data.test_fraction=0.05",
        ],
    )
    training.train(cfg, run_dir, device="cpu", progress=False)
    result = evaluate(run_dir, ["uniform"], method="msp", progress=False, plots=False)
    weights = read_safetensors(RunDir(run_dir).weights_path(0, "last"))[0]
    return {
        "rows": result["rows"],
        "accuracy": result["id_accuracy"],
        "weights": {k: v.tolist() for k, v in weights.items()},
    }


def address_space() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmSize"))
    return int(line.split()[1]) * 1024


def main() -> None:
    packed, run_dir, headroom, set_bytes = sys.argv[1], Path(sys.argv[2]), *map(int, sys.argv[3:])
    train_and_evaluate("digits", run_dir.with_name("warm-up"))
    limit = address_space() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        bytearray(set_bytes)
        bites = False
    except MemoryError:
        bites = True
    out = train_and_evaluate(packed, run_dir)
    print(json.dumps(out | {"limit_bites": bites, "headroom": headroom, "limit": limit}))


if __name__ == "__main__":
    main()
