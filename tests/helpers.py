"""Builders of tiny files in the official formats (CIFAR pickles, ODIN folders, archives)."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array, mode=mode).save(out, format="PNG")
    return out.getvalue()


def random_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def smooth_images(n: int, size: int = 32) -> np.ndarray:
    """Images that survive JPEG almost unchanged: one flat colour each."""
    colours = np.random.default_rng(1).integers(0, 256, (n, 1, 1, 3))
    return np.broadcast_to(colours, (n, size, size, 3)).astype(np.uint8)


def write_cifar10(root: Path, per_batch: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """cifar-10-batches-py/ in the official layout (pickled dicts with bytes keys).

    Returns the HWC images and labels written for the train and test splits."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written: dict[str, list[np.ndarray]] = {"train": [], "train_y": [], "test": [], "test_y": []}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        hwc = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        planar = hwc.transpose(0, 3, 1, 2).reshape(per_batch, 3072)
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": planar,
            b"filenames": [f"{i}.png".encode() for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        split = "test" if name == "test_batch" else "train"
        written[split].append(hwc)
        written[split + "_y"].append(np.array(labels))
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return {k: np.concatenate(v) for k, v in written.items()}


CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def make_tar(source_dir: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(source_dir.rglob("*")):
            tar.add(path, arcname=path.relative_to(source_dir).as_posix(), recursive=False)
    return archive


def write_image_files(folder: Path, images: np.ndarray, ext: str = ".png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"img_{i:04d}{ext}"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def float64_copies(ensemble) -> list:
    """Independent float64 copies of an ensemble's members, in eval mode."""
    nets = []
    for member in ensemble.members:
        net = type(member)(member.classifier.out_features).double().eval()
        state = member.state_dict()
        net.load_state_dict(
            {k: v.double() if v.is_floating_point() else v for k, v in state.items()}
        )
        nets.append(net)
    return nets


def normalised_float64(ensemble, images: np.ndarray):
    """(x, std): uint8 NHWC images normalised in float64 numpy, as torch tensors (N, 3, H, W)."""
    import torch

    mean = np.array(ensemble.normalization.mean)[None, :, None, None]
    std = np.array(ensemble.normalization.std)[None, :, None, None]
    return torch.tensor((images.transpose(0, 3, 1, 2) / 255.0 - mean) / std), torch.tensor(std)


def digits_train_command(*settings: str) -> list[str]:
    """`python -m leaveout train --preset digits --quiet --device cpu --set S ...` as a list."""
    import sys

    command = [sys.executable, "-m", "leaveout", "train", "--preset", "digits", "--quiet"]
    command += ["--device", "cpu"]
    for setting in settings:
        command += ["--set", setting]
    return command
