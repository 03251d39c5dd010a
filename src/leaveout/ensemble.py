"""The trained networks of a run, held in memory: K leave-out members or one standard classifier.

The ensemble classifies (method.md section 4): each member's softmax (T = 1, unperturbed input)
is mapped back to the N classes with zeros at its left-out classes; the sum over members gives
every class K - 1 votes. OOD scores are the detectors' business (`leaveout.detectors`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.inputs import Images, input_batches
from .data.transforms import Normalization
from .devices import Autocast, resolve_device
from .errors import ShapeError
from .models import create_model, fold_batchnorm, load_state
from .partitions import LeaveOutPartition
from .rundir import RunDir


class LeaveOutEnsemble:
    """Networks with their classes, normalisation and (for leave-out runs) partition.

    The members given are put in eval mode with frozen weights and moved to `device`, in place.
    Inputs to every method: see
    `leaveout.data.inputs` (uint8 images, an ImageSet, normalised floats, Pillow images or an
    iterable of batches).
    """

    def __init__(
        self,
        members: Sequence[nn.Module],
        classes: Sequence[str],
        normalization: Normalization | None = None,
        partition: LeaveOutPartition | None = None,
        image_size: tuple[int, int] = (32, 32),
        device: torch.device | str = "cpu",
        weights_id: str = "unsaved",
        test_flip: bool = False,
        test_shift: int = 0,
    ) -> None:
        if not members:
            raise ShapeError("an ensemble needs at least one member")
        if partition is not None and (partition.k, partition.num_classes) != (
            len(members),
            len(classes),
        ):
            raise ShapeError(
                f"the partition has {partition.k} groups over {partition.num_classes} classes; "
                f"got {len(members)} members and {len(classes)} classes"
            )
        self.device = resolve_device(device)
        self.members = [self.prepared(m) for m in members]
        self.folded: list[nn.Module] | None = None  # built by `networks` when first needed
        self.classes = tuple(classes)
        for m, member in enumerate(self.members):
            outputs = getattr(getattr(member, "classifier", None), "out_features", None)
            expected = len(classes) if partition is None else partition.member_num_classes(m)
            if outputs is not None and outputs != expected:
                raise ShapeError(
                    f"member {m} has {outputs} outputs; it should classify {expected} classes"
                )
        self.normalization = normalization or Normalization()
        self.partition = partition
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.weights_id = weights_id  # a digest of the weight files; caches are keyed by it
        self.test_flip = test_flip  # classify: average each member's softmax over the mirror image
        self.test_shift = test_shift  # and over copies shifted by this many pixels (`test_views`)

    def prepared(self, member: nn.Module) -> nn.Module:
        member.requires_grad_(False)
        return member.to(self.device, memory_format=torch.channels_last).eval()

    @classmethod
    def load(
        cls, run: RunDir | str | Path, device: torch.device | str = "cpu", which: str = "best"
    ) -> LeaveOutEnsemble:
        """The run's networks: settings from TOML and JSON, weights from safetensors.

        which: "best" (the selected epoch) or "last". Nothing is unpickled.
        """
        run = (run if isinstance(run, RunDir) else RunDir(run)).require()
        cfg, info, partition = run.read_config(), run.read_info(), run.read_partition()
        if partition is not None and partition.num_classes != len(info.classes):
            raise ShapeError(
                f"{run.partition_path} covers {partition.num_classes} classes; "
                f"{run.info_path} lists {len(info.classes)}"
            )
        members = []
        for i in range(info.members):
            num = len(info.classes) if partition is None else partition.member_num_classes(i)
            model = create_model(cfg.model.name, num, **cfg.model.kwargs())
            load_state(model, run.read_weights(i, which), run.weights_path(i, which))
            members.append(model)
        return cls(
            members,
            info.classes,
            info.normalization,
            partition,
            info.image_size,
            device,
            run.weights_id(which),
            cfg.data.test_flip,
            cfg.data.test_shift,
        )

    @property
    def k(self) -> int:
        return len(self.members)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def single(self, member: int) -> LeaveOutEnsemble:
        """Member `member` alone, as a classifier of its kept classes (no partition)."""
        classes = [self.classes[c] for c in self.kept_classes(member)]
        return LeaveOutEnsemble(
            [self.members[member]],
            classes,
            self.normalization,
            None,
            self.image_size,
            self.device,
            f"{self.weights_id}-member{member}",
            self.test_flip,
            self.test_shift,
        )

    def to(self, device: torch.device | str) -> LeaveOutEnsemble:
        self.device = resolve_device(device)
        self.members = [self.prepared(m) for m in self.members]
        self.folded = None
        return self

    def batches(self, x: Images, batch_size: int = 256) -> Iterator[torch.Tensor]:
        """Normalised float batches (B, 3, H, W) on the ensemble's device."""
        return input_batches(x, self.normalization, self.image_size, self.device, batch_size)

    @torch.no_grad()
    def predict_proba(self, x: Images, batch_size: int = 256, amp: str = "none") -> np.ndarray:
        """(N, num_classes) float64: member softmaxes (T = 1, unperturbed) zero-padded at their
        left-out classes, summed and divided by K (rows sum to 1). Each member's softmax is the
        weighted mean over `test_views` (the image alone by default). amp: "bf16" runs the
        members in bfloat16 autocast (the softmaxes are still float64)."""
        out = []
        networks = self.networks(amp)
        for batch in self.batches(x, batch_size):
            total = torch.zeros(len(batch), self.num_classes, dtype=torch.float64)
            views = self.test_views(batch)
            for m, member in enumerate(networks):
                probs = sum(w * F.softmax(member(view).double(), dim=1) for w, view in views)
                total[:, list(self.kept_classes(m))] += probs.cpu()
            out.append((total / self.k).numpy())
        if not out:
            raise ShapeError("no images to classify")
        return np.concatenate(out)

    def test_views(self, batch: torch.Tensor) -> list[tuple[float, torch.Tensor]]:
        """(weight, view) pairs that classification averages over, weights summing to 1: the batch,
        its mirror image with `test_flip`, and with `test_shift` = s the same views of the batch
        shifted by s pixels up-left and down-right (reflected borders), weighted half and half as
        in airbench's multi-crop evaluation."""
        views = [batch, batch.flip(3)] if self.test_flip else [batch]
        s = self.test_shift
        if not s:
            return [(1 / len(views), v) for v in views]
        h, w = batch.shape[2:]
        if s >= min(h, w):
            raise ShapeError(
                f"data.test_shift = {s} needs images larger than {s} pixels, got {h}x{w}"
            )
        padded = F.pad(batch, (s, s, s, s), mode="reflect")
        shifted = [padded[:, :, :h, :w], padded[:, :, 2 * s :, 2 * s :]]
        if self.test_flip:
            shifted += [v.flip(3) for v in shifted]
        return [(0.5 / len(views), v) for v in views] + [(0.5 / len(shifted), v) for v in shifted]

    def classify(self, x: Images, batch_size: int = 256, amp: str = "none") -> np.ndarray:
        """Class indices (N,) in the full label space (not outlier labels: see the detectors)."""
        return self.predict_proba(x, batch_size, amp).argmax(axis=1)

    def networks(self, amp: str = "none") -> list[nn.Module]:
        """The members as inference runs them: BatchNorm folded into the convolutions
        (`models.fold_batchnorm`, copies: `members` stay as given) and, with amp "bf16" or "fp16",
        run in that autocast with float32 outputs."""
        if self.folded is None:
            self.folded = [fold_batchnorm(m) for m in self.members]
        if amp == "none":
            return list(self.folded)
        return [Autocast(m, amp, self.device) for m in self.folded]

    def kept_classes(self, member: int) -> tuple[int, ...]:
        """The dataset classes that member `member` outputs, in its output order."""
        if self.partition is None:
            return tuple(range(self.num_classes))
        return self.partition.kept(member)
