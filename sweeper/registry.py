"""One strict registry class for datasets, models, attacks and methods (timm's `_registry.py` shape)."""
from __future__ import annotations

from typing import Any, Callable

from .errors import SweeperError


class Registry:
    """Name -> object. Registering a name twice raises; an unknown name lists the known ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        def add(obj: Any) -> Any:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> Any:
        if name not in self._entries:
            known = ", ".join(self.names()) or "none"
            raise SweeperError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


datasets = Registry("dataset")
models = Registry("model")
attacks = Registry("attack")
methods = Registry("method")


def register_package(registry: Registry, package_name: str) -> None:
    """Register every public submodule of a package under its module name (methods, attacks).

    Adding a method or attack is then one new module (plus its search space): nothing else to edit."""
    import importlib
    import pkgutil

    package = importlib.import_module(package_name)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and info.name not in registry:
            registry.register(info.name)(importlib.import_module(f"{package_name}.{info.name}"))
