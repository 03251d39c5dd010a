"""A stand-in `torchvision` for importing pytorch-ood beside the CPU torch wheel.

torchvision does not load next to the CPU build of torch here; pytorch-ood names torchvision
objects at import time (transforms, dataset helpers) but its detectors and metrics never use
them. `install()` makes every `torchvision...` import succeed with placeholders.
"""

import importlib.abc
import importlib.machinery
import sys
import types


class _Placeholder:
    """Stands for any torchvision object pytorch-ood names at import time; never used."""

    def __init__(self, *args, **kwargs):
        pass

    def __class_getitem__(cls, item):
        return cls


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def install() -> None:
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())
