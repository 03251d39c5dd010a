"""`leaveout demo`: the whole pipeline on the embedded digits, in about a minute on two cores.

ID: digits 0-7 (K = 4 members, each leaving two classes out). Calibration on the members' own
left-out classes. OOD at test time: the two digits never trained on (8, 9) and both noise sets.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .config import load_preset
from .evaluation import evaluate, results_markdown
from .training import summary_table, train

NOISE_NOTE = (
    "Noise is the hard case for this score: it reads only each member's softmax, and a small "
    "network can be confident on noise far from every class (the paper reports the same "
    "weakness). Mahalanobis, a distance in feature space, separates noise: "
    "`leaveout evaluate RUN --method mahalanobis`. More in docs/results.md."
)


def run_demo(
    out: str | Path = "runs/demo", device: str = "auto", progress: bool = True
) -> dict[str, Any]:
    out = Path(out)
    started = time.time()
    print(f"1/3 training 4 leave-out members on digits 0-7 into {out}")
    summaries = train(load_preset("digits"), out, device=device, progress=progress)
    print(summary_table(summaries))
    trained = time.time()
    print("\n2/3 calibrating T and eps on each member's left-out classes; 3/3 evaluating")
    result = evaluate(out, ["unseen", "uniform", "gaussian"], device=device, progress=progress)
    chosen = result["settings"]
    print(f"calibrated: T = {chosen['temperature']:g}, eps = {chosen['epsilon']:g}\n")
    print(results_markdown(result))
    print(NOISE_NOTE + "\n")
    print(
        f"train {trained - started:.0f} s, calibrate + evaluate {time.time() - trained:.0f} s; "
        f"report, tables and plots in {result['folder']}"
    )
    return result
