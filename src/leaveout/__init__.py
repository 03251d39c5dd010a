"""leaveout: OOD detection with an ensemble of self-supervised leave-out classifiers.

Vyas et al., "Out-of-Distribution Detection Using an Ensemble of Self Supervised Leave-out
Classifiers", ECCV 2018.
"""

from .batches import (
    CIFAR_MEAN,
    CIFAR_STD,
    Augment,
    BatchStream,
    CycledStream,
    Normalization,
    PairedStream,
)
from .calibration import PAPER_EPSILONS, PAPER_TEMPERATURES, calibrate_left_out, calibrate_on_pair
from .config import RunConfig, list_presets, load_preset, resolve
from .data import (
    ImageSet,
    Split,
    decode_image,
    fit_to_size,
    load_cifar,
    load_digits,
    load_images,
    load_npz,
    noise_image,
    noise_images,
    odin_split,
    random_split,
    save_npz,
    stratified_split,
)
from .datasets import DATASETS, catalog, default_data_root, download, load_dataset, locate
from .errors import (
    ConfigError,
    CorruptFileError,
    DatasetNotFoundError,
    LeaveoutError,
    ShapeError,
    TrainingDivergedError,
    UnsafePickleError,
    WriteError,
)
from .evaluation import evaluate
from .losses import entropy, margin_entropy_loss
from .metrics import aupr_in, aupr_out, auroc, detection_error, fpr_at_tpr, ood_metrics
from .models import count_parameters, create_model, list_models, register_model
from .partitions import LeaveOutPartition
from .scoring import Calibration, LeaveOutEnsemble, PytorchOODAdapter
from .training import train

__version__ = "0.1.0"

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "DATASETS",
    "PAPER_EPSILONS",
    "PAPER_TEMPERATURES",
    "Augment",
    "BatchStream",
    "Calibration",
    "ConfigError",
    "CorruptFileError",
    "CycledStream",
    "DatasetNotFoundError",
    "ImageSet",
    "LeaveOutEnsemble",
    "LeaveOutPartition",
    "LeaveoutError",
    "Normalization",
    "PairedStream",
    "PytorchOODAdapter",
    "RunConfig",
    "ShapeError",
    "Split",
    "TrainingDivergedError",
    "UnsafePickleError",
    "WriteError",
    "__version__",
    "aupr_in",
    "aupr_out",
    "auroc",
    "calibrate_left_out",
    "calibrate_on_pair",
    "catalog",
    "count_parameters",
    "create_model",
    "decode_image",
    "default_data_root",
    "detection_error",
    "download",
    "entropy",
    "evaluate",
    "fit_to_size",
    "fpr_at_tpr",
    "list_models",
    "list_presets",
    "load_cifar",
    "load_dataset",
    "load_digits",
    "load_images",
    "load_npz",
    "load_preset",
    "locate",
    "margin_entropy_loss",
    "noise_image",
    "noise_images",
    "odin_split",
    "ood_metrics",
    "random_split",
    "register_model",
    "resolve",
    "save_npz",
    "stratified_split",
    "train",
]
