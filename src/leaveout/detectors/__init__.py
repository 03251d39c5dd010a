"""OOD detectors over a trained ensemble, one file each, with scikit-learn's outlier API.

`base` (the Detector class and the one grid search), `perturb` (the input step), `features`
(what the detectors on penultimate features share), `registry` (register_detector,
create_detector, list_detectors), `runs` (loading and calibrating a run's detector), `selection`
(choosing the detector on the left-out classes: `--select auto`), and one
module per detector: `leaveout` (the paper's score), `msp`, `odin`, `energy`, `mahalanobis`,
`knn`, `vim`, `react`, `ash`, `gen`.
"""

from .base import CRITERIA, PAPER_EPSILONS, PAPER_TEMPERATURES, Detector
from .registry import create_detector, detector_class, list_detectors, register_detector
from .runs import calibrate, load_detector, run_sets, transfer_calibration
from .selection import AUTO, carry_selection, chosen_method, select_detector

__all__ = [
    "AUTO",
    "CRITERIA",
    "PAPER_EPSILONS",
    "PAPER_TEMPERATURES",
    "Detector",
    "calibrate",
    "carry_selection",
    "chosen_method",
    "create_detector",
    "detector_class",
    "list_detectors",
    "load_detector",
    "register_detector",
    "run_sets",
    "select_detector",
    "transfer_calibration",
]
