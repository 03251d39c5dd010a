"""Data: the image set, one reader per format, packed sets, named sets, splits, transforms,
batches.

Modules, lowest first: `npyfile` (rows of a .npy read in place: PackedImages), `imageset`
(ImageSet), `cifar`, `npz`, `images` (folders, archives, files), `synthetic` (noise, digits),
`packed` (`leaveout pack`: writing and reading packed sets), `sets` (named sets, downloads, the
catalogue), `splits`, `transforms` (normalisation, augmentation), `batches` (training streams),
`inputs` (what scoring accepts).
"""

from .batches import BatchStream, CycledStream, PairedStream
from .cifar import load_cifar, restricted_unpickle
from .images import (
    RESIZE_RULES,
    NamedImages,
    decode_image,
    load_images,
    read_named_images,
    resize_image,
    walk_image_files,
)
from .imageset import ImageSet
from .inputs import Images, input_batches, input_length
from .npyfile import PackedImages
from .npz import load_npz, npz_image_count, save_npz
from .packed import is_packed, load_packed
from .sets import (
    DATASETS,
    DatasetInfo,
    Download,
    catalog,
    dataset_info,
    default_data_root,
    download,
    load_dataset,
    locate,
    pack_dataset,
)
from .splits import (
    MIN_IMAGES_PER_CLASS,
    Split,
    load_run_sets,
    odin_split,
    random_split,
    report_split,
    stratified_split,
)
from .synthetic import NOISE_KINDS, load_digits, noise_image, noise_images
from .transforms import CIFAR_MEAN, CIFAR_STD, Augment, Normalization, crop_and_flip, derive_seed

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "DATASETS",
    "MIN_IMAGES_PER_CLASS",
    "NOISE_KINDS",
    "RESIZE_RULES",
    "Augment",
    "BatchStream",
    "CycledStream",
    "DatasetInfo",
    "Download",
    "ImageSet",
    "Images",
    "NamedImages",
    "Normalization",
    "PackedImages",
    "PairedStream",
    "Split",
    "catalog",
    "crop_and_flip",
    "dataset_info",
    "decode_image",
    "default_data_root",
    "derive_seed",
    "download",
    "input_batches",
    "input_length",
    "is_packed",
    "load_cifar",
    "load_dataset",
    "load_digits",
    "load_images",
    "load_npz",
    "load_packed",
    "load_run_sets",
    "locate",
    "noise_image",
    "noise_images",
    "npz_image_count",
    "odin_split",
    "pack_dataset",
    "random_split",
    "read_named_images",
    "report_split",
    "resize_image",
    "restricted_unpickle",
    "save_npz",
    "stratified_split",
    "walk_image_files",
]
