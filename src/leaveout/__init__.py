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
)
from .partitions import LeaveOutPartition

__version__ = "0.1.0"

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "DATASETS",
    "Augment",
    "BatchStream",
    "ConfigError",
    "CorruptFileError",
    "CycledStream",
    "DatasetNotFoundError",
    "ImageSet",
    "LeaveOutPartition",
    "LeaveoutError",
    "Normalization",
    "PairedStream",
    "ShapeError",
    "Split",
    "TrainingDivergedError",
    "UnsafePickleError",
    "__version__",
    "catalog",
    "decode_image",
    "default_data_root",
    "download",
    "fit_to_size",
    "load_cifar",
    "load_dataset",
    "load_digits",
    "load_images",
    "load_npz",
    "locate",
    "noise_image",
    "noise_images",
    "odin_split",
    "random_split",
    "save_npz",
    "stratified_split",
]
