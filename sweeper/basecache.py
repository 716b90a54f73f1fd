"""The base-model cache: each (scenario, seed)'s base models (sweeper/scenario.py's train_base) trained once,
kept as an entry named by Scenario.key, checked before every use, shared by every trial and node.

A local entry is the folder <root>/<key>/: FILES and manifest.json, which records the sha256 and size of
every file. An entry is only ever loaded after they are checked: a truncated or altered file (a full disk,
a killed copy) is rebuilt, never trusted. Builders stage an entry in a temporary folder of their own and
rename it into place (place_entry), so no reader sees half of one.

An object store has no atomic rename, so an entry there is published the way content-addressed stores do
it: each file is uploaded under its own sha256 (`<entry>/blobs/<sha256>`), and the entry's manifest.json,
which names those blobs, is written last, in one PUT. S3 and GCS make a single object's PUT atomic: a
reader sees no manifest (not built) or a whole one, and every blob a manifest names was uploaded before it.
Readers download the blobs into a node-local mirror and check each against its sha256 before use; a blob
that is missing or does not match makes the entry broken, and it is rebuilt. Two builders racing on one
entry each publish a whole entry; the last manifest wins, and a trial always uses the entry one manifest
names (the mirror is keyed by the manifest's own hash). See docs/architecture.md, Base-model cache."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from . import procs, storage
from .data import DataSet
from .scenario import FILES, IDENTIFIED_FILE, BaseModels, Scenario, read_base, train_base, train_identified
from .workercache import remember

NOT_BUILT = "not built"  # check_entry's verdict on an absent entry (absent is not broken)
STALE_TEMP_AGE_S = 3600  # an ownerless temporary folder untouched this long is a dead build's
_RACY_S = 2  # see _digest
_DIGESTS: dict[tuple, str] = {}  # per-process memo of file checksums, keyed by what stat() says
_BASES: OrderedDict[tuple, BaseModels] = OrderedDict()  # whole entries, per process (sweeper/workercache.py)
_IDENTIFIED: OrderedDict[tuple, tuple[dict, dict]] = OrderedDict()  # retrain_identified entries, likewise


# -- reading ---------------------------------------------------------------------------------------------
def base_folder(scenario: Scenario, seed: int, root: str | os.PathLike) -> Path:
    return Path(root) / scenario.key(seed)


def base_models(scenario: Scenario, seed: int, root: str | os.PathLike, data: DataSet | None = None,
                device: torch.device | str = "cpu") -> BaseModels:
    """Load the base models of (scenario, seed) from `root` after checking them against their manifest,
    training them first (on `device`) if absent and again (with a warning saying why) if the entry is
    broken. A whole entry is loaded once per process and then served from memory (checksums are still
    checked on every call; they are memoised by inode, size and mtime)."""
    data = data or scenario.load_data()
    kind = Kind(FILES, lambda folder: train_base(scenario, seed, data, folder, torch.device(device)))
    folder, key = _entry(kind, scenario.key(seed), root)
    return remember(_BASES, (*key, id(data)), lambda: _load_entry(scenario, seed, data, folder))


def identified_name(scenario: Scenario, seed: int, level: float) -> str:
    """The entry name of (scenario, seed)'s θ_retrain_identified at discovery `level`: hex, like a base
    entry's (remove_stale_temps reads the owner of a temporary folder from the characters after it)."""
    return hashlib.sha256(f"{scenario.key(seed)}/retrain_identified/{float(level)!r}".encode()).hexdigest()[:16]


def identified_retrain(base: BaseModels, level: float, root: str | os.PathLike,
                       device: torch.device | str = "cpu") -> tuple[dict, dict]:
    """(state dict, manifest) of `base`'s θ_retrain_identified at discovery `level` (scenario.train_identified),
    cached under `root` as an entry of its own, checked and built like the base models."""
    kind = Kind((IDENTIFIED_FILE,), lambda folder: train_identified(base, level, folder, torch.device(device)))
    folder, key = _entry(kind, identified_name(base.scenario, base.seed, level), root)
    return remember(_IDENTIFIED, key, lambda: (torch.load(folder / IDENTIFIED_FILE, weights_only=True),
                                               json.loads((folder / "manifest.json").read_text())))


@dataclass(frozen=True)
class Kind:
    """A kind of entry: the files it holds, and how to write them into a folder (returning the facts its
    manifest records besides their checksums). The base models are one kind; each discovery level's
    `retrain_identified` model another (identified_retrain)."""
    files: tuple[str, ...]
    build: Callable[[Path], dict]


def _entry(kind: Kind, name: str, root: str | os.PathLike) -> tuple[Path, tuple]:
    """The local folder of entry `name` under `root` (in an object store: this node's mirror of it), whole,
    and a key that changes when the entry is rebuilt (for per-process memos)."""
    if storage.is_remote(root):
        folder = _remote_entry(kind, name, str(root))
        return folder, (str(folder),)  # a mirror folder is named by its manifest's hash: it never changes
    folder = _local_entry(kind, Path(root) / name)
    st = (folder / "manifest.json").stat()  # a rebuilt entry keeps its path: tell it by its manifest
    return folder, (str(folder.resolve()), st.st_ino, st.st_mtime_ns)


def _local_entry(kind: Kind, folder: Path) -> Path:
    """The whole entry at the local `folder`: checked, built if absent, rebuilt if broken."""
    why = check_entry(folder, kind.files)
    if why is not None:
        if why != NOT_BUILT:
            warnings.warn(f"base models {folder} are broken ({why}); rebuilding them", stacklevel=4)
            _discard(folder)
        _build(kind, folder)
    return folder


def _remote_entry(kind: Kind, name: str, root: str) -> Path:
    """The node-local mirror of entry `name` in the object store `root`, downloaded (and checked) if this
    node has not yet got the version the store's manifest names, built and published if the store has
    none, rebuilt (with a warning) if the store's entry is broken."""
    entry = storage.join(root, name)
    mirror = mirror_root(root) / name
    manifest, why = read_manifest(entry)
    if manifest is not None:
        folder = mirror / _manifest_id(manifest)
        if folder.is_dir() and check_entry(folder, kind.files) is not None:  # this node's copy went bad
            _discard(folder)
        why = fetch(entry, manifest, folder, kind.files)
        if why is None:
            return folder
    if why != NOT_BUILT:
        warnings.warn(f"base models {storage.display(entry)} are broken ({why}); rebuilding them", stacklevel=4)
        discard_remote(entry)
    return _build_remote(kind, entry, mirror)


def _manifest_id(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


def entry_status(scenario: Scenario, seed: int, root) -> str | None:
    """check_entry's verdict for a local root, remote_status's (sizes, no download) for an object store."""
    if storage.is_remote(root):
        return remote_status(storage.join(str(root), scenario.key(seed)))
    return check_entry(base_folder(scenario, seed, root))


def entry_manifest(scenario: Scenario, seed: int, root) -> dict:
    """The manifest of a whole entry (check entry_status first)."""
    if storage.is_remote(root):
        return read_manifest(storage.join(str(root), scenario.key(seed)))[0]
    return json.loads((base_folder(scenario, seed, root) / "manifest.json").read_text())


def is_cached(scenario: Scenario, seed: int, root: str | os.PathLike) -> bool:
    """True if the entry exists and every file matches its checksum (its size, in an object store)."""
    return entry_status(scenario, seed, root) is None


def _load_entry(scenario: Scenario, seed: int, data: DataSet, folder: Path) -> BaseModels:
    return read_base(scenario, seed, data, folder, json.loads((folder / "manifest.json").read_text()))


# -- integrity -------------------------------------------------------------------------------------------
def check_entry(folder: str | os.PathLike, files: tuple[str, ...] = FILES) -> str | None:
    """None if the entry at `folder` is whole (every file present, of the size and sha256 its manifest
    records), else why not: NOT_BUILT if there is no such folder, "manifest.json missing",
    "poisoned.pt: checksum mismatch", ..."""
    folder = Path(folder)
    if not folder.is_dir():
        return NOT_BUILT
    try:
        recorded = json.loads((folder / "manifest.json").read_text())["files"]
    except FileNotFoundError:
        return "manifest.json missing"
    except (OSError, ValueError, KeyError, TypeError):
        return "manifest.json unreadable"
    if not isinstance(recorded, dict):
        return "manifest.json unreadable"
    for name in files:
        if why := _check_file(folder / name, recorded.get(name)):
            return f"{name}: {why}"
    return None


def _check_file(path: Path, want: dict | None) -> str | None:
    if not isinstance(want, dict) or "size" not in want or "sha256" not in want:
        return "no checksum in manifest.json"
    try:
        st = path.stat()
        if st.st_size != want["size"]:
            return f"truncated ({st.st_size} of {want['size']} bytes)" if st.st_size < want["size"] \
                else f"{st.st_size} bytes, expected {want['size']}"
        return None if _digest(path, st) == want["sha256"] else "checksum mismatch"
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"unreadable ({e.strerror or type(e).__name__})"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _digest(path: Path, st: os.stat_result) -> str:
    """sha256 of `path`, memoised per process by (path, inode, size, mtime): every trial checks the same
    state dicts (~45 MB each for a ResNet-18) again. A file modified within _RACY_S seconds is hashed
    anew each time: a same-size rewrite inside one coarse timestamp tick would keep its mtime (git's
    "racily clean" problem)."""
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        digest = _sha256(path)
        if time.time_ns() - st.st_mtime_ns < _RACY_S * 10**9:
            return digest
        _DIGESTS[key] = digest
    return _DIGESTS[key]


# -- building and publishing -----------------------------------------------------------------------------
def _train_into(kind: Kind, folder: Path) -> dict:
    """The kind's files into `folder`, then the manifest.json that vouches for each of them; returns it as
    read back from the file (its hash names the entry's mirror, which readers compute from the file too)."""
    facts = kind.build(folder)
    files = {name: {"sha256": _sha256(folder / name), "size": (folder / name).stat().st_size} for name in kind.files}
    (folder / "manifest.json").write_text(json.dumps({**facts, "files": files}, indent=1))
    return json.loads((folder / "manifest.json").read_text())


def _temp_prefix(name: str) -> str:
    """`.<name>-<host>-<pid>-`: whoever finds such a folder left behind can tell whether its owner lives."""
    return f".{name}-{socket.gethostname()}-{os.getpid()}-"


@contextlib.contextmanager
def _staging(where: Path, name: str):
    """A temporary folder of this process's own in `where`, for entry `name`; removed on the way out (once
    placed, nothing is left of it; after a failure, no half entry stays behind)."""
    where.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(name), dir=where))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def place_entry(tmp: Path, folder: Path, files: tuple[str, ...] = FILES) -> None:
    """Rename the whole entry staged in `tmp` to `folder`, so readers see no entry or a whole one. Builders
    racing on one entry each stage their own: the first rename wins, a later one fails (the target is a
    folder that is not empty) and that builder uses the winner's entry, if it is whole."""
    try:
        os.rename(tmp, folder)
    except OSError:
        if check_entry(folder, files) is not None:
            raise


def _build(kind: Kind, folder: Path) -> None:
    """Train beside `folder`, then place the entry there (concurrent builders, see place_entry)."""
    with _staging(folder.parent, folder.name) as tmp:
        _train_into(kind, tmp)
        place_entry(tmp, folder, kind.files)


def _build_remote(kind: Kind, entry: str, mirror: Path) -> Path:
    """Train in this node's mirror, publish to the store, then place the entry in the mirror under its
    manifest's hash (the folder a reader of that manifest would download it to)."""
    with _staging(mirror, mirror.name) as tmp:
        manifest = _train_into(kind, tmp)
        publish(tmp, entry, kind.files)
        folder = mirror / _manifest_id(manifest)
        place_entry(tmp, folder, kind.files)
        return folder


def _discard(folder: Path) -> None:
    """Move a broken entry aside (atomic: no reader sees half of it), then delete it. If the rename fails
    because another process moved it first, the outcome is the same."""
    aside = folder.parent / f"{_temp_prefix(folder.name)}{secrets.token_hex(4)}"
    try:
        os.rename(folder, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


# -- entries in an object store --------------------------------------------------------------------------
def read_manifest(entry: str) -> tuple[dict | None, str | None]:
    """(manifest, None), or (None, why): NOT_BUILT when there is no manifest."""
    raw = storage.read_bytes(storage.join(entry, "manifest.json"))
    if raw is None:
        return None, NOT_BUILT
    try:
        manifest = json.loads(raw)
        if not isinstance(manifest.get("files"), dict):
            raise ValueError
    except (ValueError, AttributeError):
        return None, "manifest.json unreadable"
    return manifest, None


def remote_status(entry: str, files: tuple[str, ...] = FILES) -> str | None:
    """None if the entry's manifest exists and names a blob of the right size for each of FILES, else why
    not (sizes are checked here without downloading; checksums when a node downloads)."""
    manifest, why = read_manifest(entry)
    if manifest is None:
        return why
    for name in files:
        want = manifest["files"].get(name)
        if not isinstance(want, dict) or "sha256" not in want or "size" not in want:
            return f"{name}: no checksum in manifest.json"
        size = storage.size(storage.join(entry, "blobs", want["sha256"]))
        if size is None:
            return f"{name}: missing"
        if size != want["size"]:
            return f"{name}: {size} bytes, expected {want['size']}"
    return None


def publish(folder: Path, entry: str, files: tuple[str, ...] = FILES) -> None:
    """Upload a whole local entry: each file under its sha256 first, its manifest.json last."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in files:
        want = manifest["files"][name]
        blob = storage.join(entry, "blobs", want["sha256"])
        if storage.size(blob) != want["size"]:  # content-addressed: an equal blob is already there
            storage.upload(folder / name, blob)
    storage.write_bytes(storage.join(entry, "manifest.json"), (folder / "manifest.json").read_bytes())


def discard_remote(entry: str) -> None:
    """Remove a broken entry: its manifest first (from then on it reads as not built), then its blobs."""
    storage.remove(storage.join(entry, "manifest.json"))
    try:
        storage.remove_tree(entry)
    except OSError:
        pass  # leftover blobs are unreferenced garbage, never read


def mirror_root(root: str) -> Path:
    """This node's copy of what it read from the object store `root` (SWEEPER_MIRROR, else ~/.cache)."""
    top = Path(os.environ.get("SWEEPER_MIRROR") or Path.home() / ".cache" / "sweeper" / "mirror")
    return top / hashlib.sha256(storage.display(root).encode()).hexdigest()[:16]


def fetch(entry: str, manifest: dict, folder: Path, files: tuple[str, ...] = FILES) -> str | None:
    """Download the entry `manifest` names into the mirror folder `folder` (staged, then placed), checking
    every blob's sha256. None on success (or if this node has it already), else why the entry is broken."""
    if folder.is_dir():
        return None
    with _staging(folder.parent, folder.name) as tmp:
        for name in files:
            if why := _download_blob(entry, manifest["files"][name], tmp / name):
                return f"{name}: {why}"
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        place_entry(tmp, folder, files)  # another process on this node may have mirrored it first
    return None


def _download_blob(entry: str, want: dict, path: Path) -> str | None:
    data = storage.read_bytes(storage.join(entry, "blobs", want["sha256"]))
    if data is None:
        return "missing"
    if hashlib.sha256(data).hexdigest() != want["sha256"]:
        return "checksum mismatch"
    path.write_bytes(data)
    return None


# -- cleaning up -----------------------------------------------------------------------------------------
_TEMP = re.compile(r"\.[0-9a-f]{16}-(?:(?P<host>.+)-(?P<pid>\d+)-)?[^-]+")  # _temp_prefix's, or older code's


def remove_stale_temps(root: str | os.PathLike, max_age_s: float = STALE_TEMP_AGE_S) -> list[str]:
    """Delete the temporary folders of builds that can no longer finish, returning their names: those
    of a dead process on this host, and ownerless ones (older code's `.<hash>-XXXX`) untouched for
    `max_age_s`. A live process's folder is kept, and so is another host's (its processes are not ours
    to see)."""
    if storage.is_remote(root):
        return []  # nothing is staged in an object store: a killed builder leaves only unreferenced blobs
    root = Path(root)
    if not root.is_dir():
        return []
    stale = [p for p in root.iterdir() if p.is_dir() and _is_stale(p, max_age_s)]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return [p.name for p in stale]


def _is_stale(path: Path, max_age_s: float) -> bool:
    m = _TEMP.fullmatch(path.name)
    if m is None:
        return False
    if m["pid"] is None:  # no owner recorded: judge by the newest write inside it
        try:
            newest = max([path.stat().st_mtime, *(c.stat().st_mtime for c in path.iterdir())])
        except FileNotFoundError:
            return False  # changing under us: someone is at work on it
        return time.time() - newest > max_age_s
    return procs.alive({"host": m["host"], "pid": m["pid"]}) is False


@dataclass
class BuildSummary:
    """What building the base models of a sweep did: entries trained because absent, found whole, and
    rebuilt because broken, as (attack, seed, reason); and the stale temporary folders removed."""
    trained: int = 0
    cached: int = 0
    rebuilt: list[tuple[str, int, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def record(self, scenario: Scenario, seed: int, why: str | None) -> bool:
        """Count one entry by check_entry's verdict; True if it needs building."""
        if why is None:
            self.cached += 1
        elif why == NOT_BUILT:
            self.trained += 1
        else:
            self.rebuilt.append((scenario.attack, seed, why))
        return why is not None

    def __str__(self) -> str:
        text = f"{self.trained} trained, {self.cached} cached"
        if self.rebuilt:
            text += f", {len(self.rebuilt)} rebuilt (" + "; ".join(
                f"{attack} seed {seed}: {why}" for attack, seed, why in self.rebuilt) + ")"
        if self.removed:
            text += f"; removed {len(self.removed)} stale temporary folder{'s' * (len(self.removed) != 1)}"
        return text


__all__ = ["NOT_BUILT", "BuildSummary", "base_folder", "base_models", "check_entry", "entry_manifest", "identified_retrain",
           "entry_status", "fetch", "is_cached", "place_entry", "publish", "read_manifest", "remote_status",
           "remove_stale_temps"]
