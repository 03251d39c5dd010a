"""Settings as dataclasses, loaded from TOML presets shipped with the package.

A run's settings = a preset, then an optional TOML file, then `--set section.key=value`
overrides; the resolved result is saved as `config.toml` in the run directory.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigError

RESIZE_RULES = ("shorter-side", "stretch", "center-crop")
NORMALIZATIONS = ("cifar", "fit")
SCHEDULES = ("linear", "cosine", "triangular", "step", "constant")
if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class DataSettings:
    """Which images, how they are split, augmented and normalised."""

    dataset: str = "cifar10"
    id_classes: list[int] | None = None  # train on these classes only (relabelled 0..M-1)
    val_fraction: float = 0.1  # stratified validation part of the training split
    test_fraction: float = 0.2  # held out as the test split when the set has none (digits)
    max_per_class: int = 0  # 0: all training images; else at most this many per class
    padding: int = 4  # random-crop padding in pixels at 32x32, scaled with the side (0: no crop)
    hflip: bool = True
    normalization: str = "cifar"  # "cifar" (ODIN's mean/std) or "fit" (from the training images)
    test_flip: bool = False  # classify by the mean softmax of each image and its mirror image
    test_shift: int = 0  # also classify copies shifted by this many pixels (0: none; see README)
    resize: str = "shorter-side"  # how images of folders/archives reach their size: RESIZE_RULES
    image_size: int = 0  # side in pixels; 0: the set's own (files 32, digits 16, arrays as stored)
    loader_workers: int = -1  # processes reading packed batches; -1: 4 on CUDA, 0 on the CPU


@dataclass
class ModelSettings:
    name: str = "densenet_bc_100"
    dropout: float | None = None  # only for networks that take it (wrn_28_10)

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments for `models.create_model` beyond the class count."""
        return {} if self.dropout is None else {"dropout": self.dropout}


@dataclass
class OptimSettings:
    """SGD and the learning-rate schedule (applied per step)."""

    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "linear"  # linear, cosine, triangular (all to lr_floor), step, constant
    lr_floor: float = 1e-4
    warmup: float = 0.2  # triangular: fraction of the steps rising from lr_floor to lr
    milestones: list[int] = field(default_factory=lambda: [50, 75])  # epochs, for "step"
    gamma: float = 0.1


@dataclass
class TrainSettings:
    mode: str = "leaveout"  # "leaveout" (K members) or "standard" (one classifier, plain CE)
    k: int = 5
    partition_seed: int = 3
    margin: float = 0.4
    beta: float = 0.2
    label_smoothing: float = 0.0  # on the ID cross-entropy (the paper: 0)
    whiten_bias_epochs: int = -1  # airnet: its whitening bias learns in this many epochs (-1: all)
    lookahead: float = 0.0  # airbench's lookahead: per-step decay of the slow weights (0: off)
    lookahead_every: int = 5  # steps between lookahead syncs (and one at every epoch's end)
    epochs: int = 100
    batch_size: int = 100
    ood_batch_size: int = 100
    joint_forward: bool = True  # ID and left-out images in one forward pass (BatchNorm sees both)
    seed: int = 0
    select: str = "auroc"  # which epoch is kept as "best": auroc, accuracy or last
    amp: str = "none"  # none, bf16 (CPU or CUDA) or fp16 (CUDA, with loss scaling)
    channels_last: bool = True
    eval_batch_size: int = 500
    sync_batchnorm: bool = False  # under torchrun on CUDA: BatchNorm statistics over all processes


@dataclass
class RunConfig:
    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    train: TrainSettings = field(default_factory=TrainSettings)

    def validate(self) -> RunConfig:
        _choice("train.mode", self.train.mode, ("leaveout", "standard"))
        _choice("train.select", self.train.select, ("auroc", "accuracy", "last"))
        _choice("train.amp", self.train.amp, ("none", "bf16", "fp16"))
        _choice("optim.schedule", self.optim.schedule, SCHEDULES)
        _choice("data.normalization", self.data.normalization, NORMALIZATIONS)
        _choice("data.resize", self.data.resize, RESIZE_RULES)
        if self.train.mode == "standard" and self.train.select == "auroc":
            self.train.select = "accuracy"  # no left-out classes to compute an AUROC on
        for key in ("epochs", "batch_size", "ood_batch_size", "eval_batch_size"):
            if getattr(self.train, key) < 1:
                raise ConfigError(f"train.{key} must be at least 1")
        if not 0 <= self.train.label_smoothing < 1:
            raise ConfigError(
                f"train.label_smoothing must lie in [0, 1), got {self.train.label_smoothing}"
            )
        if not 0 < self.optim.warmup < 1:
            raise ConfigError(f"optim.warmup must lie in (0, 1), got {self.optim.warmup}")
        if self.data.max_per_class < 0:
            raise ConfigError(
                f"data.max_per_class must be 0 (all) or positive, got {self.data.max_per_class}"
            )
        if self.data.image_size != 0 and self.data.image_size < 8:
            raise ConfigError(
                f"data.image_size must be 0 (the set's own) or at least 8, got {self.data.image_size}"
            )
        if self.data.test_shift < 0:
            raise ConfigError(
                f"data.test_shift must be 0 (none) or positive, got {self.data.test_shift}"
            )
        if self.data.loader_workers < -1:
            raise ConfigError(
                f"data.loader_workers must be -1 (auto) or at least 0, got {self.data.loader_workers}"
            )
        if self.train.whiten_bias_epochs < -1:
            raise ConfigError(
                "train.whiten_bias_epochs must be -1 (every epoch) or at least 0, got "
                f"{self.train.whiten_bias_epochs}"
            )
        if not 0 <= self.train.lookahead < 1:
            raise ConfigError(f"train.lookahead must lie in [0, 1), got {self.train.lookahead}")
        if self.train.lookahead_every < 1:
            raise ConfigError(
                f"train.lookahead_every must be at least 1, got {self.train.lookahead_every}"
            )
        if self.train.mode == "leaveout" and self.train.k < 2:
            raise ConfigError(f"train.k must be at least 2, got {self.train.k}")
        if not 0 < self.data.val_fraction < 1 or not 0 < self.data.test_fraction < 1:
            raise ConfigError("data.val_fraction and data.test_fraction must lie in (0, 1)")
        return self

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], base: RunConfig | None = None) -> RunConfig:
        """Settings from nested dicts; unknown sections or keys and wrong types are errors."""
        out = dataclasses.replace(base) if base else cls()
        for section, entries in values.items():
            if section not in _SECTIONS:
                raise ConfigError(f"unknown section [{section}]; known: {', '.join(_SECTIONS)}")
            if not isinstance(entries, dict):
                raise ConfigError(f"[{section}] must be a table")
            current = dataclasses.replace(getattr(out, section))
            for key, value in entries.items():
                _set(current, section, key, value)
            setattr(out, section, current)
        return out

    def to_toml(self) -> str:
        lines = []
        for section, entries in self.to_dict().items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in entries.items() if v is not None]
            lines.append("")
        return "\n".join(lines)


_SECTIONS = {f.name: f.type for f in dataclasses.fields(RunConfig)}


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")


def _set(settings: object, section: str, key: str, value: Any) -> None:
    hints = typing.get_type_hints(type(settings))
    if key not in hints:
        raise ConfigError(f"unknown setting {section}.{key}; known: {', '.join(hints)}")
    setattr(settings, key, _coerce(value, hints[key], f"{section}.{key}"))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is not type(None):
                try:
                    return _coerce(value, option, key)
                except ConfigError:
                    pass
        raise ConfigError(f"{key}: {value!r} is not a valid {hint}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce(v, item, key) for v in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key} must be {hint.__name__}, got {value!r}")
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} to TOML")


def list_presets() -> list[str]:
    folder = resources.files("leaveout") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def read_toml(path: str | Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read TOML ({exc})") from exc


def load_preset(name: str) -> RunConfig:
    """A shipped preset (see `list_presets()`), over the defaults."""
    if name not in list_presets():
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(list_presets())}")
    text = (resources.files("leaveout") / "presets" / f"{name}.toml").read_text()
    return RunConfig.from_dict(tomllib.loads(text)).validate()


def parse_override(text: str) -> dict[str, dict[str, Any]]:
    """ "section.key=value" -> {section: {key: value}}; the value is read as TOML, else a string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(
            f"override {text!r} must look like section.key=value (e.g. train.epochs=3)"
        )
    path, raw = text.split("=", 1)
    section, key = path.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return {section: {key: value}}


def resolve(
    preset: str | None = None, config_file: str | Path | None = None, overrides: list[str] = ()
) -> RunConfig:
    """preset, then a TOML file, then the overrides, in that order; validated."""
    cfg = load_preset(preset) if preset else RunConfig()
    if config_file:
        cfg = RunConfig.from_dict(read_toml(config_file), base=cfg)
    for text in overrides:
        cfg = RunConfig.from_dict(parse_override(text), base=cfg)
    return cfg.validate()


def differences(a: RunConfig, b: RunConfig) -> list[str]:
    """Lines "section.key: a -> b" for every setting that differs."""
    da, db = a.to_dict(), b.to_dict()
    return [
        f"{s}.{k}: {da[s][k]!r} -> {db[s][k]!r}" for s in da for k in da[s] if da[s][k] != db[s][k]
    ]
