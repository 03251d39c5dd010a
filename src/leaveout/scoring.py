"""The trained ensemble as a detector: OOD scores with the input step, and ID classification.

Score of one input x (method.md section 4), for member i at temperature T:
    x~ = x - eps * sign(grad_x H(softmax(z_i(x) / T))) / std        (a step that lowers the entropy)
    s_i = max_j softmax(z_i(x~) / T)_j - H(softmax(z_i(x~) / T))
    S(x) = sum_i s_i                                                 (higher = more in-distribution)
Only the input gradient is taken (`torch.autograd.grad`); the weights never collect gradients.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .batches import Normalization
from .config import RunConfig, read_toml
from .data import ImageSet
from .datasets import file_digest
from .errors import ConfigError, CorruptFileError, DatasetNotFoundError, ShapeError
from .losses import entropy
from .partitions import LeaveOutPartition

GRADIENTS = ("entropy", "odin")


@dataclass(frozen=True)
class Calibration:
    """The chosen temperature and input step, and the threshold that keeps 95% of ID tuning images."""

    temperature: float
    epsilon: float
    threshold: float | None = None
    gradient: str = "entropy"

    @classmethod
    def load(cls, path: Path) -> Calibration:
        try:
            obj = json.loads(path.read_text())
            return cls(
                float(obj["temperature"]),
                float(obj["epsilon"]),
                None if obj.get("threshold") is None else float(obj["threshold"]),
                str(obj.get("gradient", "entropy")),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptFileError(f"{path}: not a calibration file ({exc})") from exc


MEMBER_SCORES = ("msp-entropy", "msp")


def member_score(logits: torch.Tensor, kind: str = "msp-entropy") -> torch.Tensor:
    """max softmax - entropy (the paper) or max softmax alone ("msp", for the ablation) of
    already temperature-scaled logits (B, C) -> (B,)."""
    top = F.softmax(logits.float(), dim=1).amax(dim=1)
    return top if kind == "msp" else top - entropy(logits)


def _step_objective(logits: torch.Tensor, gradient: str) -> torch.Tensor:
    """The quantity whose input gradient sign gives the step (its sum over the batch)."""
    if gradient == "entropy":
        return entropy(logits).sum()
    return F.cross_entropy(logits.float(), logits.argmax(dim=1), reduction="sum")  # ODIN's


class LeaveOutEnsemble:
    """K trained members (or one standard classifier) held in memory, ready to score.

    Construct with `LeaveOutEnsemble.load(run_dir)`. Inputs to every method: uint8 images
    (N, H, W, 3) as a numpy array, a tensor or an ImageSet, or float tensors (N, 3, H, W)
    already normalised with `self.normalization`.
    """

    def __init__(
        self,
        members: Sequence[nn.Module],
        classes: Sequence[str],
        normalization: Normalization,
        partition: LeaveOutPartition | None = None,
        image_size: tuple[int, int] = (32, 32),
        calibration: Calibration | None = None,
        device: torch.device | str = "cpu",
        run_dir: Path | None = None,
    ) -> None:
        self.members = list(members)
        self.classes = tuple(classes)
        self.normalization = normalization
        self.partition = partition
        self.image_size = tuple(image_size)
        self.calibration = calibration
        self.device = torch.device(device)
        self.run_dir = run_dir
        self.weights_id = "unsaved"  # set by `load`: a digest of the weight files (cache keys)

    # --- loading ---

    @classmethod
    def load(
        cls, run_dir: str | Path, device: str | torch.device = "cpu", which: str = "best"
    ) -> LeaveOutEnsemble:
        """Load a run directory: weights from safetensors, settings from TOML and JSON.

        which: "best" (the selected epoch) or "last". Nothing is unpickled.
        """
        from .training import build_network, load_weights, member_dir

        run_dir = Path(run_dir)
        for name in ("config.toml", "run.json"):
            if not (run_dir / name).is_file():
                raise DatasetNotFoundError(
                    f"{run_dir / name} is missing: is {run_dir} a training run?"
                )
        cfg = RunConfig.from_dict(read_toml(run_dir / "config.toml")).validate()
        info = _read_json(run_dir / "run.json")
        partition = None
        if info["mode"] == "leaveout":
            partition = LeaveOutPartition.load(run_dir / "partition.json")
        classes = info["classes"]
        if partition is not None and partition.num_classes != len(classes):
            raise ShapeError(
                f"{run_dir / 'partition.json'} covers {partition.num_classes} classes; "
                f"run.json lists {len(classes)}"
            )
        device = torch.device(device)
        members, digests = [], []
        for i in range(info["members"]):
            num = len(classes) if partition is None else partition.member_num_classes(i)
            model = build_network(cfg, num)  # weights are loaded next: no seeding needed
            path = member_dir(run_dir, i) / f"{which}.safetensors"
            if not path.is_file():
                raise DatasetNotFoundError(
                    f"{path} is missing: member {i} has not finished training"
                )
            load_weights(model, path)
            digests.append(file_digest(path, "sha1"))
            model.requires_grad_(False)
            members.append(model.to(device, memory_format=torch.channels_last).eval())
        norm = info["normalization"]
        calibration = None
        if (run_dir / "calibration.json").is_file():
            calibration = Calibration.load(run_dir / "calibration.json")
        ensemble = cls(
            members,
            classes,
            Normalization(tuple(norm["mean"]), tuple(norm["std"])),
            partition,
            tuple(info["image_size"]),
            calibration,
            device,
            run_dir,
        )
        ensemble.weights_id = hashlib.sha1("".join(digests).encode()).hexdigest()[:12]
        return ensemble

    @property
    def k(self) -> int:
        return len(self.members)

    def member_view(self, member: int) -> LeaveOutEnsemble:
        """An ensemble of member `member` alone (for per-member scores; no class mapping)."""
        return LeaveOutEnsemble(
            [self.members[member]],
            self.classes,
            self.normalization,
            None,
            self.image_size,
            self.calibration,
            self.device,
            self.run_dir,
        )

    # --- inputs ---

    def _as_uint8(self, x: ImageSet | np.ndarray | torch.Tensor) -> torch.Tensor | None:
        if isinstance(x, ImageSet):
            x = x.images
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if x.dtype != torch.uint8:
            return None
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ShapeError(f"uint8 images must be (N, H, W, 3) RGB; got {tuple(x.shape)}")
        if tuple(x.shape[1:3]) != self.image_size:
            raise ShapeError(
                f"images are {tuple(x.shape[1:3])} but the ensemble was trained on {self.image_size}"
            )
        return x

    def batches(
        self, x: ImageSet | np.ndarray | torch.Tensor, batch_size: int
    ) -> Iterator[torch.Tensor]:
        """Normalised float batches (B, 3, H, W) on the ensemble's device."""
        images = self._as_uint8(x)
        if images is None:
            assert isinstance(x, torch.Tensor)
            if x.ndim != 4 or x.shape[1] != 3:
                raise ShapeError(
                    f"float inputs must be normalised (N, 3, H, W); got {tuple(x.shape)}"
                )
            if not torch.isfinite(x).all():
                raise ShapeError("inputs contain NaN or infinite values")
            for start in range(0, len(x), batch_size):
                yield x[start : start + batch_size].to(self.device, torch.float32)
            return
        for start in range(0, len(images), batch_size):
            yield self.normalization(images[start : start + batch_size].to(self.device))

    # --- scores ---

    def _settings(self, temperature: float | None, epsilon: float | None) -> tuple[float, float]:
        cal = self.calibration
        t = temperature if temperature is not None else (cal.temperature if cal else 1000.0)
        e = epsilon if epsilon is not None else (cal.epsilon if cal else 0.0)
        if t <= 0 or e < 0:
            raise ConfigError(f"temperature must be > 0 and epsilon >= 0; got {t}, {e}")
        return float(t), float(e)

    def _std(self) -> torch.Tensor:
        return torch.tensor(self.normalization.std, device=self.device).view(1, 3, 1, 1)

    def step_direction(
        self, member: nn.Module, x: torch.Tensor, temperature: float, gradient: str = "entropy"
    ) -> torch.Tensor:
        """sign(grad_x objective) / std for a normalised batch x: (B, 3, H, W)."""
        _, (direction,) = self._directions(member, x, [temperature], gradient)
        return direction

    def _directions(
        self, member: nn.Module, x: torch.Tensor, temperatures: Sequence[float], gradient: str
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (B, C) of one forward pass, and the step direction for every T from it."""
        if gradient not in GRADIENTS:
            raise ConfigError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
        x = x.detach().requires_grad_(True)
        directions = []
        with torch.enable_grad():
            logits = member(x)
            for i, t in enumerate(temperatures):
                objective = _step_objective(logits / t, gradient)
                (grad,) = torch.autograd.grad(objective, x, retain_graph=i < len(temperatures) - 1)
                directions.append(grad.sign() / self._std())
        return logits.detach(), directions

    @torch.no_grad()
    def member_scores_grid(
        self,
        x: ImageSet | np.ndarray | torch.Tensor,
        temperatures: Sequence[float],
        epsilons: Sequence[float],
        gradient: str = "entropy",
        batch_size: int = 256,
        progress: bool = False,
        members: Sequence[int] | None = None,
        score_kind: str = "msp-entropy",
    ) -> np.ndarray:
        """Member scores s_i for every (T, eps): (len(T), len(eps), K, N) float64.

        Per member and batch: one forward pass, one backward per T (through the same graph)
        and one forward per (T, eps > 0). members: score with these members only.
        score_kind: the member score, "msp-entropy" (the paper) or "msp".
        """
        if score_kind not in MEMBER_SCORES:
            raise ConfigError(f"score_kind must be one of {MEMBER_SCORES}, got {score_kind!r}")
        from tqdm.auto import tqdm

        chosen = [self.members[i] for i in (range(self.k) if members is None else members)]
        stepped = any(e > 0 for e in epsilons)
        out = []
        n = len(x.images) if isinstance(x, ImageSet) else len(x)
        bar = tqdm(total=n, unit="img", desc="scoring", disable=not progress, leave=False)
        for batch in self.batches(x, batch_size):
            grid = np.empty((len(temperatures), len(epsilons), len(chosen), len(batch)))
            for m, member in enumerate(chosen):
                if stepped:
                    logits, directions = self._directions(member, batch, temperatures, gradient)
                else:
                    logits, directions = member(batch), []
                for ti, t in enumerate(temperatures):
                    for ei, eps in enumerate(epsilons):
                        scaled = (logits if eps == 0 else member(batch - eps * directions[ti])) / t
                        grid[ti, ei, m] = member_score(scaled, score_kind).double().cpu().numpy()
            out.append(grid)
            bar.update(len(batch))
        bar.close()
        if not out:
            raise ShapeError("no images to score")
        return np.concatenate(out, axis=-1)

    def score(
        self,
        x: ImageSet | np.ndarray | torch.Tensor,
        temperature: float | None = None,
        epsilon: float | None = None,
        gradient: str | None = None,
        batch_size: int = 256,
        progress: bool = False,
    ) -> np.ndarray:
        """S(x) = sum_i s_i: (N,) float64, higher = more in-distribution.

        temperature/epsilon default to the run's calibration (else T=1000, eps=0); epsilon is in
        [0, 1] pixel units. gradient: "entropy" (the paper) or "odin" (cross-entropy against the
        predicted label).
        """
        t, e = self._settings(temperature, epsilon)
        grad = gradient or (self.calibration.gradient if self.calibration else "entropy")
        grid = self.member_scores_grid(x, [t], [e], grad, batch_size, progress)
        return grid[0, 0].sum(axis=0)

    # --- classification ---

    @torch.no_grad()
    def predict_proba(
        self, x: ImageSet | np.ndarray | torch.Tensor, batch_size: int = 256
    ) -> np.ndarray:
        """(N, num_classes): member softmaxes (T = 1, unperturbed) zero-padded at their left-out
        classes, summed and divided by K (rows sum to 1)."""
        out = []
        for batch in self.batches(x, batch_size):
            total = torch.zeros(len(batch), len(self.classes), device=self.device)
            for m, member in enumerate(self.members):
                probs = F.softmax(member(batch).float(), dim=1)
                kept = (
                    range(len(self.classes)) if self.partition is None else self.partition.kept(m)
                )
                total[:, list(kept)] += probs
            out.append((total / self.k).cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    def predict(self, x: ImageSet | np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """Class indices (N,) in the full label space."""
        return self.predict_proba(x, batch_size).argmax(axis=1)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CorruptFileError(f"{path}: not readable JSON ({exc})") from exc


class PytorchOODAdapter:
    """pytorch-ood's Detector interface around the ensemble (without importing pytorch-ood).

    `predict(x)` returns outlier scores (higher = more OOD) = -S(x) as a tensor.
    `predict_features(logits)` takes per-member logits (K, N, C_i) of unperturbed inputs and
    returns -sum_i s_i at the calibrated temperature (no input step: it needs the inputs).
    """

    def __init__(
        self,
        ensemble: LeaveOutEnsemble,
        temperature: float | None = None,
        epsilon: float | None = None,
    ) -> None:
        self.ensemble, self.temperature, self.epsilon = ensemble, temperature, epsilon

    def fit(self, *args: object, **kwargs: object) -> PytorchOODAdapter:
        """Nothing to fit: the ensemble is trained and calibrated already."""
        return self

    def fit_features(self, *args: object, **kwargs: object) -> PytorchOODAdapter:
        return self

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.ensemble.score(x, self.temperature, self.epsilon)
        return -torch.from_numpy(scores)

    def predict_features(self, logits: Sequence[torch.Tensor]) -> torch.Tensor:
        t, _ = self.ensemble._settings(self.temperature, 0.0)
        return -sum(member_score(z / t) for z in logits)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(x)
