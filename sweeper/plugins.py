"""Methods, attacks, data sets and models from outside the package.

Two ways in:
- **Installed packages**, through entry points in the groups `sweeper.methods`, `sweeper.attacks` (each
  pointing at a module shaped like the built-in ones) and `sweeper.datasets`, `sweeper.models` (each
  pointing at the loader / builder function), registered under the entry point's name in every process
  that imports sweeper's registries.
- **A local file** (`--plugin path/to/my_method.py`, `plugins:` in the experiment): a module with
  `unlearn` is registered as a method under the file's stem, one with `craft` as an attack; a file may
  also register data sets or models itself (`@registry.models.register("name")`). A method's search
  space is its `SEARCH_SPACE` dict or `<stem>.yaml` beside the file, checked like a built-in one.

A file's source (and its YAML) travels inside every trial's config, so each Ray worker, on any node,
loads the very file the driver validated, without needing the path on its own disk."""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from importlib import metadata
from pathlib import Path

from . import yamlio
from .errors import SweeperError
from .registry import Registry, attacks, datasets, methods, models

GROUPS = {"sweeper.methods": methods, "sweeper.attacks": attacks, "sweeper.datasets": datasets,
          "sweeper.models": models}
_LOADED: dict[str, str] = {}  # plugin name -> digest of the source this process loaded under it
_SCANNED = False              # entry points are read once per process


def load_entry_points() -> None:
    """Register every installed plugin not registered yet (idempotent)."""
    global _SCANNED
    if _SCANNED:
        return
    _SCANNED = True
    for group, registry in GROUPS.items():
        for ep in metadata.entry_points(group=group):
            if ep.name in registry:
                continue
            try:
                obj = ep.load()
            except Exception as e:  # noqa: BLE001 - a broken plugin is one line naming it
                raise SweeperError(f"plugin {ep.name} ({group} = {ep.value}) failed to import: "
                                   f"{type(e).__name__}: {e}") from None
            registry.register(ep.name)(obj)


def from_file(name: str) -> bool:
    """True if `name` was registered from a plugin file in this process."""
    return name in _LOADED


def spec(path: str | Path) -> dict:
    """What a worker needs to load a plugin file: its name, path, source and search-space YAML."""
    p = Path(path).expanduser().resolve()
    if not p.is_file() or p.suffix != ".py":
        raise SweeperError(f"plugin {path}: no such Python file")
    space = p.with_suffix(".yaml")
    return {"name": p.stem, "path": str(p), "source": p.read_text(),
            "space": space.read_text() if space.is_file() else None}


def ensure(specs: list[dict]) -> None:
    """Load each plugin file once per process (the same source again is a no-op; another source under
    the same name is an error: one process cannot hold two versions of a method)."""
    load_entry_points()
    for s in specs:
        digest = hashlib.sha256((s["source"] + (s.get("space") or "")).encode()).hexdigest()
        if _LOADED.get(s["name"]) == digest:
            continue
        if s["name"] in _LOADED:
            raise SweeperError(f"plugin {s['name']}: a different file of that name is already loaded in this process")
        _load(s)
        _LOADED[s["name"]] = digest


def _load(s: dict) -> None:
    name = s["name"]
    module_name = f"sweeper_plugin_{name}"
    module_spec = importlib.util.spec_from_loader(module_name, loader=None, origin=s["path"])
    module = importlib.util.module_from_spec(module_spec)
    module.__file__ = s["path"]
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    try:
        exec(compile(s["source"], s["path"], "exec"), module.__dict__)  # noqa: S102 - the user's own plugin file
    except Exception as e:  # noqa: BLE001
        sys.modules.pop(module_name, None)
        raise SweeperError(f"plugin {s['path']} failed to import: {type(e).__name__}: {e}") from None
    if hasattr(module, "unlearn"):
        if not hasattr(module, "SEARCH_SPACE"):  # checked before registering: a refused file leaves no name behind
            module.SEARCH_SPACE_FILE = str(Path(s["path"]).with_suffix(".yaml"))
            if not s.get("space"):
                raise SweeperError(f"plugin {s['path']}: method {name!r} has no search space (a SEARCH_SPACE dict "
                                   f"or {Path(s['path']).with_suffix('.yaml').name} beside it)")
            try:
                module.SEARCH_SPACE = yamlio.load(s["space"])
            except yamlio.yaml.YAMLError as e:
                raise SweeperError(f"{module.SEARCH_SPACE_FILE}: not valid YAML ({str(e).splitlines()[0]})") from None
        module.PAPER = getattr(module, "PAPER", f"plugin {s['path']}")
        _add(methods, name, module, s)
    if hasattr(module, "craft"):
        _add(attacks, name, module, s)


def _add(registry: Registry, name: str, module, s: dict) -> None:
    if name in registry:
        raise SweeperError(f"plugin {s['path']}: {registry.kind} {name!r} already exists (a built-in or another plugin); "
                           "rename the file")
    registry.register(name)(module)
