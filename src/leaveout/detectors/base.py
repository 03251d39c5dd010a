"""The detector base class: scikit-learn's outlier-detector API over a trained ensemble.

- Settings go to `__init__`, which does no work.
- `fit(id_val, ood_val)` chooses the hyperparameters over `search_space` on a validation pair
  (every grid point scored, the best by `criterion`), sets the threshold that keeps `tpr` of the
  ID validation images, and returns self; `fit_left_out(validation)` does the same on the
  ensemble's own left-out classes (each member's kept vs left-out classes, scored by that member
  alone, the criterion averaged over members): no OOD data needed. Learned attributes end in
  `_` (`temperature_`, `threshold_`, `grid_`).
- `score_samples(x)`: higher = more in-distribution. `decision_function(x)` = score minus
  `threshold_`. `predict(x)`: +1 inlier, -1 outlier.

A detector sums its member score over the ensemble's members (a standard classifier is an
ensemble of one). Subclasses implement `member_scores` for a batch and a list of grid points.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..data.imageset import ImageSet
from ..data.inputs import Images, input_length
from ..devices import amp_suffix
from ..ensemble import LeaveOutEnsemble
from ..errors import ConfigError, NotFittedError, ShapeError
from ..metrics import auroc, bootstrap_metrics, detection_error, fpr_at_tpr, threshold_at_tpr
from .perturb import Objective, stepped_logit_scores

PAPER_TEMPERATURES = (1.0, 10.0, 100.0, 1000.0, 5000.0)
PAPER_EPSILONS = (0.0, 0.000313, 0.000625, 0.00125, 0.002, 0.003)
CRITERIA = ("fpr95", "auroc", "deterr")
SCORING_AMP = ("none", "bf16")  # fp16 is left out: the input gradient at large T underflows it
DEFAULT_CALIBRATION_IMAGES = 2000  # at most this many validation images per side and member
SELECTION_RESAMPLES = 200  # bootstrap resamples that measure how stable a grid choice is
VALIDATION_METRICS = ("FPR95", "DetErr", "AUROC")

Point = dict[str, Any]
SearchSpace = dict[str, tuple[Any, ...]]


class Detector:
    """Base class; see the module docstring. Subclasses set the class attributes below."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line for listings and --help
    default_search_space: ClassVar[SearchSpace] = {}
    settings: ClassVar[tuple[str, ...]] = ()  # other settings that change the score
    needs_training_data: ClassVar[bool] = False  # fits statistics on the training images
    representation: ClassVar[str] = "logits"  # what `score_outputs` takes: logits or features

    def __init__(
        self,
        ensemble: LeaveOutEnsemble,
        *,
        search_space: dict[str, Sequence[Any]] | None = None,
        tpr: float = 0.95,
        criterion: str = "fpr95",
        batch_size: int = 256,
        progress: bool = False,
        amp: str = "none",
    ) -> None:
        self.ensemble = ensemble
        self.search_space = search_space
        self.tpr = tpr
        self.criterion = criterion
        self.batch_size = batch_size
        self.progress = progress
        self.amp = amp  # "bf16": the networks' passes in bfloat16 autocast, scores still float64

    # --- settings ---

    def get_params(self) -> dict[str, Any]:
        """Every setting given to `__init__` (hyperparameters, score settings, operations)."""
        keys = [*self.default_search_space, *self.settings]
        keys += ["search_space", "tpr", "criterion", "batch_size", "progress", "amp"]
        return {key: getattr(self, key) for key in keys}

    def set_params(self, **params: Any) -> Detector:
        known = self.get_params()
        for key, value in params.items():
            if key not in known:
                raise ConfigError(f"{self.name} has no setting {key!r}; known: {', '.join(known)}")
            setattr(self, key, value)
        return self

    def hyperparameters(self) -> dict[str, Any]:
        """The values scores use: fitted (`temperature_`) where fit chose them, else the settings."""
        return {
            key: getattr(self, key + "_", getattr(self, key)) for key in self.default_search_space
        }

    def scoring_params(self) -> dict[str, Any]:
        """Everything that determines the scores: the hyperparameters and the score settings."""
        return self.hyperparameters() | {key: getattr(self, key) for key in self.settings}

    def searched(self) -> SearchSpace:
        """The values `fit` tries: `search_space` over the class's default search space."""
        space = dict(self.default_search_space)
        for key, values in (self.search_space or {}).items():
            if key not in space:
                raise ConfigError(
                    f"{self.name} cannot search {key!r}; its hyperparameters: "
                    f"{', '.join(space) or 'none'}"
                )
            space[key] = tuple(values)
        if any(not values for values in space.values()):
            raise ConfigError(f"{self.name}: every searched hyperparameter needs a value")
        return space

    def grid_points(self) -> list[Point]:
        """Every combination of the searched values, the first hyperparameter outermost."""
        space = self.searched()
        return [dict(zip(space, values)) for values in itertools.product(*space.values())]

    def check_settings(self) -> None:
        if self.criterion not in CRITERIA:
            raise ConfigError(
                f"criterion must be one of {', '.join(CRITERIA)}, got {self.criterion!r}"
            )
        if not 0 < self.tpr <= 1:
            raise ConfigError(f"tpr must lie in (0, 1], got {self.tpr}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.amp not in SCORING_AMP:
            raise ConfigError(f"amp must be one of {', '.join(SCORING_AMP)}, got {self.amp!r}")

    # --- scores ---

    def member_scores(
        self, member_index: int, member: nn.Module, batch: torch.Tensor, points: Sequence[Point]
    ) -> torch.Tensor:
        """Scores (P, B) float64 of one member on a normalised batch at every point.

        By default: `score_outputs` of the member's logits, after the input step of
        `step_objective` at points with epsilon > 0 (detectors on features override this).
        """
        std = self.ensemble.normalization.std_tensor(batch.device)
        score = partial(self.score_outputs, member_index)
        return stepped_logit_scores(member, batch, points, std, score, self.step_objective())

    def step_objective(self) -> Callable[[float], Objective] | None:
        """The objective (per temperature) whose input gradient gives the step; None: no step."""
        return None

    def score_outputs(self, member_index: int, output: torch.Tensor, point: Point) -> torch.Tensor:
        """The member score (B,) float64 from the member's output (logits or features, see
        `representation`) of unperturbed inputs; for detectors with an input step only at
        epsilon 0."""
        raise NotImplementedError(f"{self.name} scores inputs only")

    def scores_from_outputs(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Scores (N,) float64 from each member's outputs at the fitted settings, summed."""
        point = self.hyperparameters()
        if point.get("epsilon", 0.0) > 0:
            raise ConfigError(
                f"{self.name} with epsilon = {point['epsilon']} steps its input: score inputs, "
                "not precomputed outputs"
            )
        if len(outputs) != self.ensemble.k:
            raise ShapeError(f"{len(outputs)} output tensors for {self.ensemble.k} members")
        self.check_ready()
        return sum(self.score_outputs(m, output, point) for m, output in enumerate(outputs))

    def score_grid(self, x: Images, points: Sequence[Point]) -> np.ndarray:
        """Scores (P, N) float64 at every point, summed over members; higher = more ID."""
        from tqdm.auto import tqdm

        self.check_settings()
        check_points(points)
        self.check_ready()
        out = []
        total = input_length(x)
        with tqdm(
            total=total, unit="img", desc=self.name, disable=not self.progress, leave=False
        ) as bar:
            networks = self.networks()
            for batch in self.ensemble.batches(x, self.batch_size):
                summed = torch.zeros(len(points), len(batch), dtype=torch.float64)
                for m, member in enumerate(networks):
                    summed += self.member_scores(m, member, batch, points).cpu()
                out.append(summed.numpy())
                bar.update(len(batch))
        if not out:
            raise ShapeError("no images to score")
        return np.concatenate(out, axis=1)

    def networks(self) -> list[nn.Module]:
        """The members as the scores run them (`LeaveOutEnsemble.networks`, in `amp`)."""
        return self.ensemble.networks(self.amp)

    def score_samples(self, x: Images) -> np.ndarray:
        """(N,) float64, higher = more in-distribution, at the fitted (else given) settings."""
        return self.score_grid(x, [self.hyperparameters()])[0]

    def decision_function(self, x: Images) -> np.ndarray:
        """score_samples(x) - threshold_: negative for outliers."""
        return self.score_samples(x) - self.fitted_threshold()

    def predict(self, x: Images) -> np.ndarray:
        """+1 for inliers (score >= threshold_), -1 for outliers, as int64 (N,)."""
        return np.where(self.decision_function(x) >= 0, 1, -1).astype(np.int64)

    def fitted_threshold(self) -> float:
        threshold = getattr(self, "threshold_", None)
        if threshold is None:
            raise NotFittedError(
                f"{self.name} has no threshold yet: call fit(...) or fit_left_out(...) first "
                "(or `leaveout calibrate` for a run)"
            )
        return float(threshold)

    # --- statistics of the training images (Mahalanobis) ---

    def fit_statistics(self, train: ImageSet) -> Detector:
        """Fit what the score needs from labelled training images; nothing by default."""
        return self

    def has_statistics(self) -> bool:
        return True

    def check_ready(self) -> None:
        if not self.has_statistics():
            raise NotFittedError(
                f"{self.name} needs statistics of the training images: pass train=... to fit, "
                "or call fit_statistics(train)"
            )

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Fitted statistics as tensors (empty for most detectors), for caching."""
        return {}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> Detector:
        return self

    def prepare(self, train: ImageSet | None) -> None:
        if not self.has_statistics():
            if train is None:
                raise ConfigError(f"{self.name} needs the training images: fit(..., train=...)")
            self.fit_statistics(train)

    # --- fitting ---

    def member_view(self, member: int) -> Detector:
        """This detector on one member alone (same settings, the fitted hyperparameters included;
        statistics of that member)."""
        view = type(self)(self.ensemble.single(member))
        view.set_params(**self.get_params())
        for key in self.default_search_space:
            if hasattr(self, key + "_"):
                setattr(view, key + "_", getattr(self, key + "_"))
        view.progress = False
        return view

    def fit(
        self, id_val: Images, ood_val: Images | None = None, *, train: ImageSet | None = None
    ) -> Detector:
        """Choose the hyperparameters on (id_val, ood_val) and the threshold on id_val.

        Without ood_val the settings stay as given and only the threshold is fitted.
        train: labelled training images, for detectors that need their statistics.
        """
        self.check_settings()
        self.prepare(train)
        if ood_val is None:
            self.set_fitted(self.hyperparameters(), [], "threshold only, on the given ID images")
            self.threshold_ = threshold_at_tpr(self.score_samples(id_val), self.tpr)
            return self
        points = self.grid_points()
        id_grid, ood_grid = self.score_grid(id_val, points), self.score_grid(ood_val, points)
        rows = [p | validation_metrics(i, o) for p, i, o in zip(points, id_grid, ood_grid)]
        shares = selection_shares([(id_grid, ood_grid)], self.criterion)
        rows = [row | {"chosen_share": share} for row, share in zip(rows, shares)]
        best = best_row(rows, self.criterion)
        self.set_fitted(dict(points[best]), rows, "the given ID / OOD validation pair")
        self.threshold_ = threshold_at_tpr(id_grid[best], self.tpr)
        return self

    def fit_left_out(
        self,
        validation: ImageSet,
        *,
        train: ImageSet | None = None,
        max_images: int = DEFAULT_CALIBRATION_IMAGES,
    ) -> Detector:
        """Choose the hyperparameters on the ensemble's own left-out classes (no OOD data).

        For every member: validation images of its kept classes against those of its left-out
        classes (each side a seeded subsample of at most `max_images`), scored by that member
        alone; the criterion is averaged over members. The threshold keeps `tpr` of (at most
        `max_images` of) the validation images, scored by the whole ensemble.
        """
        self.check_settings()
        partition = self.ensemble.partition
        if partition is None or validation.labels is None:
            raise ConfigError(
                "fitting on left-out classes needs a leave-out ensemble and labelled validation "
                "images (a standard classifier has no left-out classes: use fit(id_val, ood_val))"
            )
        self.prepare(train)
        points = self.grid_points()
        per_member, sizes, pairs = [], [], []
        for m in range(self.ensemble.k):
            left_out = np.isin(validation.labels, partition.left_out(m))
            view = self.member_view(m)
            sides = [
                subsample(np.flatnonzero(mask), max_images, m) for mask in (~left_out, left_out)
            ]
            sizes.append([len(side) for side in sides])
            grids = [view.score_grid(validation.images[side], points) for side in sides]
            per_member.append([validation_metrics(i, o) for i, o in zip(*grids)])
            pairs.append(grids)
        rows = [
            point
            | {
                key: float(np.mean([member[i][key] for member in per_member]))
                for key in VALIDATION_METRICS
            }
            for i, point in enumerate(points)
        ]
        shares = selection_shares(pairs, self.criterion)
        rows = [row | {"chosen_share": share} for row, share in zip(rows, shares)]
        best = best_row(rows, self.criterion)
        n_id, n_out = np.mean(sizes, axis=0).round().astype(int)
        how = (
            f"left-out classes of the validation split ({n_id} ID vs {n_out} left-out images per "
            f"member, at most {max_images} per side)"
        )
        self.set_fitted(dict(points[best]), rows, how)
        ids = validation.images[subsample(np.arange(len(validation)), max_images, self.ensemble.k)]
        self.threshold_ = threshold_at_tpr(self.score_samples(ids), self.tpr)
        return self

    def set_fitted(self, params: Point, rows: list[dict[str, Any]], validation: str) -> None:
        for key, value in params.items():
            setattr(self, key + "_", value)
        self.grid_ = rows
        self.validation_ = validation

    # --- saving a calibration ---

    def calibration_record(self) -> dict[str, Any]:
        """What `fit` chose, in a JSON-ready dict (saved by `leaveout calibrate`)."""
        return {
            "detector": self.name,
            "weights": self.ensemble.weights_id,
            "params": self.hyperparameters(),
            "settings": {key: getattr(self, key) for key in self.settings},
            "threshold": self.fitted_threshold(),
            "tpr": self.tpr,
            "criterion": self.criterion,
            "validation": getattr(self, "validation_", ""),
            "grid": getattr(self, "grid_", []),
        }

    def apply_calibration(self, record: dict[str, Any]) -> Detector:
        """The state of a saved `calibration_record` (settings, chosen values, threshold)."""
        try:
            self.set_params(**record.get("settings", {}))
            self.set_fitted(
                dict(record["params"]),
                list(record.get("grid", [])),
                str(record.get("validation", "")),
            )
            self.threshold_ = float(record["threshold"])
            self.tpr = float(record.get("tpr", self.tpr))
            self.criterion = str(record.get("criterion", self.criterion))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a calibration of {self.name} ({exc})") from exc
        return self

    def cache_key(self) -> str:
        """A file-name-safe key of everything that determines the scores."""
        key = self.name + "".join(f"-{k}{_short(v)}" for k, v in self.scoring_params().items())
        return key + amp_suffix(self.amp)

    def to(self, device: torch.device | str) -> Detector:
        self.ensemble.to(device)
        return self


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def validation_metrics(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, float]:
    """FPR95, detection error and AUROC (fractions) of one validation pair."""
    return {
        "FPR95": fpr_at_tpr(id_scores, ood_scores),
        "DetErr": detection_error(id_scores, ood_scores),
        "AUROC": auroc(id_scores, ood_scores),
    }


def best_row(rows: Sequence[dict[str, Any]], criterion: str) -> int:
    """Index of the best row: the criterion first, ties by AUROC, then the earlier grid point."""

    def key(i: int) -> tuple[float, float]:
        row = rows[i]
        if criterion == "fpr95":
            return (row["FPR95"], -row["AUROC"])
        if criterion == "auroc":
            return (-row["AUROC"], row["FPR95"])
        return (row["DetErr"], -row["AUROC"])

    return min(range(len(rows)), key=key)


def chosen_row(grid: Sequence[dict[str, Any]], params: Point) -> dict[str, Any] | None:
    """The row of a calibration grid at the chosen settings `params` (None when absent)."""
    return next((r for r in grid if all(r.get(k) == v for k, v in params.items())), None)


def selection_shares(
    pairs: Sequence[Sequence[np.ndarray]],
    criterion: str,
    resamples: int = SELECTION_RESAMPLES,
    seed: int = 0,
) -> list[float]:
    """How often each grid point would be chosen on bootstrap resamples of the validation images.

    pairs: one (ID scores (P, n_id), OOD scores (P, n_ood)) per validation pair (per member on
    left-out classes), P grid points scored on the same images. Each resample draws every pair's
    ID and OOD images with replacement, scores all points on the same draw, averages the metrics
    over pairs as the selection does and picks by `best_row`. Returns P fractions summing to 1:
    a chosen point with a small share was a near-tie on these images.
    """
    samples = [bootstrap_metrics(i, o, resamples, seed + n) for n, (i, o) in enumerate(pairs)]
    mean = {key: np.mean([s[key] for s in samples], axis=0) for key in VALIDATION_METRICS}
    wins = np.zeros(len(mean["AUROC"][0]))
    for r in range(resamples):
        rows = [{key: mean[key][r, p] for key in VALIDATION_METRICS} for p in range(len(wins))]
        wins[best_row(rows, criterion)] += 1
    return list(wins / resamples)


def check_points(points: Sequence[Point]) -> None:
    """Temperatures must be positive and input steps non-negative."""
    for point in points:
        if point.get("temperature", 1.0) <= 0 or point.get("epsilon", 0.0) < 0:
            raise ConfigError(f"temperature must be > 0 and epsilon >= 0; got {point}")


def subsample(indices: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most `limit` of `indices`: a seeded choice (sorted), or all of them."""
    if len(indices) <= limit:
        return indices
    return indices[np.sort(np.random.default_rng(seed).choice(len(indices), limit, replace=False))]
