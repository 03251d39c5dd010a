"""The detector registry (timm style): every module of this package registers its detectors.

Adding a detector is one new file in `leaveout/detectors/` with a `Detector` subclass decorated
with `@register_detector`; the package imports every module it holds, so nothing else changes.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..ensemble import LeaveOutEnsemble
    from .base import Detector

DETECTORS: dict[str, type[Detector]] = {}
_INFRASTRUCTURE = {"base", "features", "perturb", "registry", "runs", "selection"}


def register_detector(cls: type[Detector]) -> type[Detector]:
    """Class decorator: make `cls` available by its `name` to create_detector and the CLI."""
    if not cls.name:
        raise ConfigError(f"{cls.__name__} needs a class attribute `name` to be registered")
    DETECTORS[cls.name] = cls
    return cls


def _discover() -> None:
    for module in pkgutil.iter_modules(_package_path()):
        if module.name not in _INFRASTRUCTURE:
            importlib.import_module(f"{__package__}.{module.name}")


def _package_path() -> list[str]:
    return list(importlib.import_module(__package__ or "leaveout.detectors").__path__)


def list_detectors() -> list[str]:
    """Registered names, the paper's score first."""
    _discover()
    return sorted(DETECTORS, key=lambda name: (name != "leaveout", name))


def detector_class(name: str) -> type[Detector]:
    _discover()
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {name!r}; known: {', '.join(list_detectors())}")
    return DETECTORS[name]


def create_detector(name: str, ensemble: LeaveOutEnsemble, **params: Any) -> Detector:
    """A detector by name over `ensemble`, with its settings (e.g. temperature=10.0)."""
    cls = detector_class(name)
    takes = settings_of(cls)
    unknown = sorted(set(params) - set(takes))
    if unknown:
        raise ConfigError(
            f"{name}: unexpected keyword argument {unknown[0]!r}; it takes {', '.join(takes)}"
        )
    return cls(ensemble, **params)


def settings_of(cls: type[Detector]) -> list[str]:
    """The keyword settings a detector class takes: its own and the base class's."""
    from .base import Detector

    names: list[str] = []
    for init in (cls.__init__, Detector.__init__):
        for parameter in list(inspect.signature(init).parameters.values())[2:]:
            if parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                names.append(parameter.name)
    return list(dict.fromkeys(names))
