"""leaveout: OOD detection with an ensemble of self-supervised leave-out classifiers.

Vyas et al., "Out-of-Distribution Detection Using an Ensemble of Self Supervised Leave-out
Classifiers", ECCV 2018. The layers, lowest first (docs/architecture.md): errors, files, config;
data, partitions, models, losses, metrics, reports; rundir; ensemble; detectors; training,
evaluation; cli.
"""

from importlib import metadata as _metadata

from .config import RunConfig, list_presets, load_preset, resolve
from .data import (
    CIFAR_MEAN,
    CIFAR_STD,
    DATASETS,
    Augment,
    BatchStream,
    CycledStream,
    ImageSet,
    Normalization,
    PairedStream,
    Split,
    catalog,
    decode_image,
    default_data_root,
    download,
    load_cifar,
    load_dataset,
    load_digits,
    load_images,
    load_npz,
    load_run_sets,
    locate,
    noise_image,
    noise_images,
    odin_split,
    random_split,
    read_named_images,
    report_split,
    resize_image,
    save_npz,
    stratified_split,
)
from .detectors import (
    PAPER_EPSILONS,
    PAPER_TEMPERATURES,
    Detector,
    create_detector,
    list_detectors,
    load_detector,
    register_detector,
    run_sets,
)
from .ensemble import LeaveOutEnsemble
from .errors import (
    ConfigError,
    CorruptFileError,
    DatasetNotFoundError,
    LeaveoutError,
    LeaveoutWarning,
    NotFittedError,
    RunNotFoundError,
    ShapeError,
    TrainingDivergedError,
    UnsafePickleError,
    WriteError,
)
from .evaluation import evaluate
from .losses import entropy, margin_entropy_loss
from .metrics import (
    aupr_in,
    aupr_out,
    auroc,
    detection_error,
    fpr_at_tpr,
    metric_intervals,
    ood_metrics,
    paired_differences,
    threshold_at_tpr,
)
from .models import count_parameters, create_model, list_models, register_model
from .partitions import LeaveOutPartition
from .rundir import RunDir
from .training import train

try:
    __version__ = _metadata.version("leaveout")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "unknown"

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "DATASETS",
    "PAPER_EPSILONS",
    "PAPER_TEMPERATURES",
    "Augment",
    "BatchStream",
    "ConfigError",
    "CorruptFileError",
    "CycledStream",
    "DatasetNotFoundError",
    "Detector",
    "ImageSet",
    "LeaveOutEnsemble",
    "LeaveOutPartition",
    "LeaveoutError",
    "LeaveoutWarning",
    "Normalization",
    "NotFittedError",
    "PairedStream",
    "RunConfig",
    "RunDir",
    "RunNotFoundError",
    "ShapeError",
    "Split",
    "TrainingDivergedError",
    "UnsafePickleError",
    "WriteError",
    "__version__",
    "aupr_in",
    "aupr_out",
    "auroc",
    "catalog",
    "count_parameters",
    "create_detector",
    "create_model",
    "decode_image",
    "default_data_root",
    "detection_error",
    "download",
    "entropy",
    "evaluate",
    "fpr_at_tpr",
    "list_detectors",
    "list_models",
    "list_presets",
    "load_cifar",
    "load_dataset",
    "load_detector",
    "load_digits",
    "load_images",
    "load_npz",
    "load_preset",
    "load_run_sets",
    "locate",
    "margin_entropy_loss",
    "metric_intervals",
    "noise_image",
    "noise_images",
    "odin_split",
    "ood_metrics",
    "paired_differences",
    "random_split",
    "read_named_images",
    "register_detector",
    "register_model",
    "report_split",
    "resize_image",
    "resolve",
    "run_sets",
    "save_npz",
    "stratified_split",
    "threshold_at_tpr",
    "train",
]
