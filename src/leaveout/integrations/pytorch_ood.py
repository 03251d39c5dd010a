"""Any leaveout detector as a real `pytorch_ood.api.Detector`, with pytorch-ood 0.4 semantics.

    import leaveout as lo
    from leaveout.integrations.pytorch_ood import PytorchOODDetector

    detector = PytorchOODDetector(lo.load_detector("runs/c10"))
    outlier = detector.predict(x)   # (B,) outlier scores, higher = more OOD, on x's device

- `predict(x)`: x as pytorch-ood passes it (normalised float (B, 3, H, W); uint8 images work too).
- `fit(loader)`: pytorch-ood's "fit on training data": batches (x, y) with class labels, used by
  detectors that need training statistics (Mahalanobis); a no-op for the others.
- `fit_features(z, y)` / `predict_features(z)` (Mahalanobis) and `predict_logits(z)` (logit
  detectors at epsilon 0) take the penultimate features or logits; for an ensemble of K members,
  a list of K tensors (one per member), for a single network the tensor itself.
- `hyperparameter_space`, `get_hyperparameters`, `set_hyperparameters`: the detector's search
  space and current values (`pytorch_ood.utils.GridSearch` can drive them). `to(device)` moves
  the networks.

pytorch-ood is optional: install it with `pip install --no-deps pytorch-ood` next to a CPU-only
torch (its torchvision dependency does not load beside the CPU wheel, and its detectors and
metrics never use it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..detectors.base import Detector
from ..errors import ConfigError

try:
    from pytorch_ood.api import Detector as PytorchOODBase
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "leaveout.integrations.pytorch_ood needs pytorch-ood: pip install --no-deps pytorch-ood"
    ) from exc


class PytorchOODDetector(PytorchOODBase):
    """A leaveout `Detector` behind pytorch-ood's API: outlier scores = -score_samples."""

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.detector = detector
        self.hyperparameter_space = {k: list(v) for k, v in detector.searched().items()}
        self.requires_fit = detector.needs_training_data

    @property
    def device(self) -> torch.device:
        return self.detector.ensemble.device

    def to(self, device: str | torch.device) -> PytorchOODDetector:
        self.detector.to(device)
        return self

    def get_hyperparameters(self) -> dict[str, Any]:
        return self.detector.hyperparameters()

    def set_hyperparameters(self, **values: Any) -> PytorchOODDetector:
        for key, value in values.items():
            if key not in self.hyperparameter_space:
                raise ConfigError(
                    f"unknown hyperparameter {key!r} for {self.detector.name}; "
                    f"known: {', '.join(self.hyperparameter_space)}"
                )
            setattr(self.detector, key + "_", value)
        self.detector.threshold_ = None  # chosen for other values
        return self

    def fit(self, data_loader: Any) -> PytorchOODDetector:
        """Fit training statistics from (x, y) batches (Mahalanobis); nothing for the others."""
        if self.requires_fit:
            self.detector.fit_statistics(data_loader)
        return self

    def fit_features(
        self, z: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor
    ) -> PytorchOODDetector:
        if self.requires_fit:
            self.detector.fit_features(self.per_member(z), y)  # type: ignore[attr-defined]
        return self

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Outlier scores (B,) float64 on x's device: the negated leaveout score."""
        scores = torch.from_numpy(self.detector.score_samples(x))
        return (-scores).to(x.device if isinstance(x, torch.Tensor) else "cpu")

    def predict_features(self, z: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        return self.from_outputs(z, "features")

    def predict_logits(self, logits: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        return self.from_outputs(logits, "logits")

    def from_outputs(
        self, outputs: torch.Tensor | Sequence[torch.Tensor], kind: str
    ) -> torch.Tensor:
        if self.detector.representation != kind:
            raise ConfigError(
                f"{self.detector.name} scores {self.detector.representation}, not {kind}"
            )
        tensors = self.per_member(outputs)
        scores = self.detector.scores_from_outputs([t.to(self.device) for t in tensors])
        return (-scores).to(tensors[0].device)

    def per_member(self, outputs: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if isinstance(outputs, torch.Tensor):
            outputs = [outputs]
        if len(outputs) != self.detector.ensemble.k:
            raise ConfigError(
                f"pass one tensor per member ({self.detector.ensemble.k}), got {len(outputs)}"
            )
        return list(outputs)
