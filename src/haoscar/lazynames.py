"""A package's names loaded on first use (PEP 562): importing one submodule of ``haoscar.spec`` or
``haoscar.replication`` must not load every other one with it (each command's start-up time)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: a name of ``homes`` from its module, else a submodule (as
    ``package.X`` was reachable when the package imported its modules eagerly)."""

    def getattr_(name: str) -> Any:
        module = homes.get(name)
        if module is not None:
            return getattr(importlib.import_module(module), name)
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":  # the submodule exists and lacks something itself
                raise
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return getattr_
