"""A scenario (data set, model, attack, training recipe) and its base models, trained once per seed.

base/<hash>/ holds θ_poisoned and θ_retrain as state_dicts, the crafted poisoning and manifest.json.
The hash covers the scenario, the seed, the recipe and BASE_VERSION, so changing any of them (or the
code that trains, bumped by hand in BASE_VERSION) never reuses a stale model. manifest.json records the
sha256 and size of every file, and an entry is only ever loaded after they are checked: a truncated
or altered file (a full disk, a killed copy) is rebuilt, never trusted."""
from __future__ import annotations

import hashlib
import inspect
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import procs, storage
from . import attacks as _attacks  # noqa: F401  (registers attacks)
from . import datasets as _datasets  # noqa: F401
from . import models as _models  # noqa: F401
from .attacks import Poisoning, Victim
from .data import DataSet, Split
from .metrics import accuracy
from .models import BlockModel
from .registry import attacks, datasets, models
from .training import Recipe, full_precision, prepare, train_from_scratch

BASE_VERSION = 6  # bump when training, crafting or evaluation code changes what a cached model means
# (3: manifest.json carries checksums; older entries are simply not found and get rebuilt;
#  4: gradient_canceling crafts as its authors do, so version-3 entries under its old parameters are stale;
#  5: poisoning.pt holds plain tensors (loaded with weights_only=True), crafting and training on the device;
#  6: witches_brew crafts against the scenario's own model and recipe with the reference's step size)
FILES = ("poisoned.pt", "retrain.pt", "poisoning.pt")  # what manifest.json vouches for
NOT_BUILT = "not built"  # check_entry's verdict on an absent entry (absent is not broken)
STALE_TEMP_AGE_S = 3600  # an ownerless temporary folder untouched this long is a dead build's
_RACY_S = 2  # see _digest
_DIGESTS: dict[tuple, str] = {}  # per-process memo of file checksums, keyed by what stat() says
# Per-process caches: a Ray worker is reused across trials (reuse_actors, Ray's task worker pool), so each
# loads a data set and a (scenario, seed)'s base models once instead of once per trial. Bounded: a CIFAR
# entry holds a poisoned copy of the training set (600 MB).
WORKER_CACHE = int(os.environ.get("SWEEPER_WORKER_CACHE", "4"))
_DATASETS: OrderedDict[str, DataSet] = OrderedDict()
_BASES: OrderedDict[tuple, "BaseModels"] = OrderedDict()


@dataclass(frozen=True)
class Scenario:
    dataset: str = "digits"
    model: str = "small_cnn"
    attack: str = "gaussian"
    dataset_params: dict = field(default_factory=dict)
    model_params: dict = field(default_factory=dict)
    attack_params: dict = field(default_factory=dict)
    recipe: Recipe = field(default_factory=Recipe)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Scenario":
        return cls(**{**d, "recipe": Recipe(**d.get("recipe", {}))})

    def key(self, seed: int) -> str:
        payload = {"scenario": self.as_dict(), "seed": int(seed), "version": BASE_VERSION,
                   "torch": torch.__version__.split("+")[0]}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def load_data(self) -> DataSet:
        """The data set, loaded once per process (read-only by convention: splits are never modified in place)."""
        key = json.dumps([self.dataset, self.dataset_params], sort_keys=True, default=str)
        return remember(_DATASETS, key, lambda: datasets.get(self.dataset)(**self.dataset_params))

    def build_model(self, data: DataSet, seed: int) -> BlockModel:
        """A freshly initialised model; the init depends on `seed` only (global RNG left untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return models.get(self.model)(data, **self.model_params)


@dataclass
class BaseModels:
    """What every trial of one (scenario, seed) starts from."""
    scenario: Scenario
    seed: int
    data: DataSet
    poisoning: Poisoning
    poisoned: dict[str, torch.Tensor]  # θ_poisoned state_dict
    retrain: dict[str, torch.Tensor]   # θ_retrain state_dict
    manifest: dict
    path: Path

    @property
    def retrain_units(self) -> int:
        return int(self.manifest["retrain_units"])

    def model(self, which: str, device: torch.device | str = "cpu") -> BlockModel:
        m = self.scenario.build_model(self.data, self.seed)
        m.load_state_dict(getattr(self, which))
        return prepare(m, torch.device(device)).eval()


def _reference_metrics(model: BlockModel, data: DataSet, poisoning: Poisoning, attack) -> dict:
    with full_precision():
        return {"acc/val": accuracy(model, data.val), "acc/test": accuracy(model, data.test),
                **attack.effect(model, poisoning.context)}


def _craft(scenario: Scenario, seed: int, data: DataSet, device: torch.device) -> Poisoning:
    """The attack's crafting on `device`; attacks that name `victim` get the scenario's model and recipe."""
    attack = attacks.get(scenario.attack)
    extra = {}
    if "victim" in inspect.signature(attack.craft).parameters:
        extra["victim"] = Victim(lambda s: prepare(scenario.build_model(data, s), device), scenario.recipe,
                                 data.test.to(device), data.num_classes)
    if "text" in inspect.signature(attack.craft).parameters:  # text attacks tokenise with the data set's tokenizer
        extra["text"] = data.text
    start = time.perf_counter()
    poisoning = attack.craft(data.train.to(device), seed=seed, **extra, **scenario.attack_params)
    poisoning.craft_seconds = poisoning.craft_seconds or time.perf_counter() - start
    return poisoning


def _train_base(scenario: Scenario, seed: int, data: DataSet, folder: Path, device: torch.device) -> None:
    attack = attacks.get(scenario.attack)
    poisoning = _craft(scenario, seed, data, device)
    on_device = DataSet(data.name, data.train, data.val.to(device), data.test.to(device), data.num_classes,
                        data.mean, data.std)
    timings = {}
    refs = {}
    for which, split in (("poisoned", poisoning.train), ("retrain", poisoning.retain)):
        start = time.perf_counter()
        model = train_from_scratch(scenario.build_model(data, seed), split.to(device), scenario.recipe, seed)
        _synchronize(device)
        timings[which] = time.perf_counter() - start
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, folder / f"{which}.pt")
        refs[which] = _reference_metrics(model, on_device, poisoning, attack)
    torch.save(_poisoning_state(poisoning), folder / "poisoning.pt")
    manifest = {
        "scenario": scenario.as_dict(), "seed": seed, "version": BASE_VERSION,
        "poison_indices": poisoning.forget.tolist(), "attack_params": scenario.attack_params,
        "n_train": len(poisoning.train), "n_clean": len(poisoning.train) - len(poisoning.forget),
        "retrain_units": scenario.recipe.retrain_units(len(poisoning.train) - len(poisoning.forget)),
        "craft_seconds": poisoning.craft_seconds, "craft_units": poisoning.craft_units,
        "train_seconds": timings, "metrics": refs, "torch": torch.__version__, "device": str(device),
        "files": {name: {"sha256": _sha256(folder / name), "size": (folder / name).stat().st_size}
                  for name in FILES},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu(v):
    return v.detach().cpu() if isinstance(v, torch.Tensor) else v


def _poisoning_state(p: Poisoning) -> dict:
    """Plain tensors and numbers only, so that it loads with torch.load(weights_only=True): nothing read
    back from the cache is unpickled as code."""
    return {"train_x": _cpu(p.train.x), "train_y": _cpu(p.train.y), "forget": _cpu(p.forget),
            "context": {k: _cpu(v) for k, v in p.context.items()},
            "craft_seconds": float(p.craft_seconds), "craft_units": int(p.craft_units)}


def _load_poisoning(path: Path) -> Poisoning:
    s = torch.load(path, weights_only=True)
    return Poisoning(Split(s["train_x"], s["train_y"]), s["forget"], s["context"], s["craft_seconds"],
                     s["craft_units"])


def base_folder(scenario: Scenario, seed: int, root: str | os.PathLike) -> Path:
    return Path(root) / scenario.key(seed)


def base_models(scenario: Scenario, seed: int, root: str | os.PathLike, data: DataSet | None = None,
                device: torch.device | str = "cpu") -> BaseModels:
    """Load the base models of (scenario, seed) from `root` after checking them against their manifest,
    training them first (on `device`) if absent and again (with a warning saying why) if the entry is
    broken. A whole entry is loaded once per process and then served from memory (checksums are still
    checked on every call; they are memoised by inode, size and mtime)."""
    data = data or scenario.load_data()
    if storage.is_remote(root):
        folder = _remote_entry(scenario, seed, str(root), data, torch.device(device))
        key = (str(folder), id(data))
        return remember(_BASES, key, lambda: _load_entry(scenario, seed, data, folder))
    folder = base_folder(scenario, seed, root)
    why = check_entry(folder)
    if why is not None:
        if why != NOT_BUILT:
            warnings.warn(f"base models {folder} are broken ({why}); rebuilding them", stacklevel=2)
            _discard(folder)
        _build(scenario, seed, data, folder, torch.device(device))
    st = (folder / "manifest.json").stat()
    key = (str(folder.resolve()), st.st_ino, st.st_mtime_ns, id(data))
    return remember(_BASES, key, lambda: _load_entry(scenario, seed, data, folder))


def _remote_entry(scenario: Scenario, seed: int, root: str, data: DataSet, device: torch.device) -> Path:
    """The node-local mirror of (scenario, seed)'s entry in the object store `root`, downloaded (and checked)
    if this node has not yet got the version the store's manifest names, built and published if the store
    has none, rebuilt (with a warning) if the store's entry is broken. See sweeper/storage.py."""
    entry = storage.join(root, scenario.key(seed))
    mirror = storage.mirror_root(root) / scenario.key(seed)
    manifest, why = storage.read_manifest(entry)
    if manifest is not None:
        folder = mirror / _manifest_id(manifest)
        if folder.is_dir() and check_entry(folder) is not None:  # this node's copy went bad: fetch it again
            _discard(folder)
        why = storage.fetch(entry, manifest, folder, FILES)
        if why is None:
            return folder
    if why != NOT_BUILT:
        warnings.warn(f"base models {storage.display(entry)} are broken ({why}); rebuilding them", stacklevel=3)
        storage.discard(entry)
    mirror.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(mirror), dir=mirror))
    try:
        _train_base(scenario, seed, data, tmp, device)
        storage.publish(tmp, entry, FILES)
        folder = mirror / _manifest_id(json.loads((tmp / "manifest.json").read_text()))
        try:
            os.rename(tmp, folder)
        except OSError:
            if check_entry(folder) is not None:
                raise
        return folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _manifest_id(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


def entry_status(scenario: Scenario, seed: int, root) -> str | None:
    """check_entry's verdict for a local root, storage.entry_status's (sizes, no download) for an object store."""
    if storage.is_remote(root):
        return storage.entry_status(storage.join(str(root), scenario.key(seed)), FILES)
    return check_entry(base_folder(scenario, seed, root))


def entry_manifest(scenario: Scenario, seed: int, root) -> dict:
    """The manifest of a whole entry (check entry_status first)."""
    if storage.is_remote(root):
        return storage.read_manifest(storage.join(str(root), scenario.key(seed)))[0]
    return json.loads((base_folder(scenario, seed, root) / "manifest.json").read_text())


def _load_entry(scenario: Scenario, seed: int, data: DataSet, folder: Path) -> BaseModels:
    return BaseModels(scenario, seed, data, _load_poisoning(folder / "poisoning.pt"),
                      torch.load(folder / "poisoned.pt", weights_only=True),
                      torch.load(folder / "retrain.pt", weights_only=True),
                      json.loads((folder / "manifest.json").read_text()), folder)


def remember(cache: OrderedDict, key, make):
    """`cache[key]`, made on a miss; least recently used entries beyond WORKER_CACHE are dropped."""
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = make()
    while len(cache) > max(1, WORKER_CACHE):
        cache.popitem(last=False)
    return value


def is_cached(scenario: Scenario, seed: int, root: str | os.PathLike) -> bool:
    """True if the entry exists and every file matches its checksum (its size, in an object store)."""
    return entry_status(scenario, seed, root) is None


# -- integrity ----------------------------------------------------------------------------------------
def check_entry(folder: str | os.PathLike) -> str | None:
    """None if the entry at `folder` is whole (every file present, of the size and sha256 its manifest
    records), else why not: NOT_BUILT if there is no such folder, "manifest.json missing",
    "poisoned.pt: checksum mismatch", ..."""
    folder = Path(folder)
    if not folder.is_dir():
        return NOT_BUILT
    try:
        files = json.loads((folder / "manifest.json").read_text())["files"]
    except FileNotFoundError:
        return "manifest.json missing"
    except (OSError, ValueError, KeyError, TypeError):
        return "manifest.json unreadable"
    if not isinstance(files, dict):
        return "manifest.json unreadable"
    for name in FILES:
        if why := _check_file(folder / name, files.get(name)):
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


# -- building and cleaning up -------------------------------------------------------------------------
def _temp_prefix(folder: Path) -> str:
    """`.<hash>-<host>-<pid>-`: whoever finds such a folder left behind can tell whether its owner lives."""
    return f".{folder.name}-{socket.gethostname()}-{os.getpid()}-"


def _build(scenario: Scenario, seed: int, data: DataSet, folder: Path, device: torch.device) -> None:
    """Train into a temporary folder beside `folder`, then rename it into place, so concurrent callers
    (several trials, several processes) never see half an entry; if two train at once, the first rename
    wins and the other checks the winner's entry."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(folder), dir=folder.parent))
    try:
        _train_base(scenario, seed, data, tmp, device)
        os.rename(tmp, folder)
    except OSError:
        if check_entry(folder) is not None:
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _discard(folder: Path) -> None:
    """Move a broken entry aside (atomic: no reader sees half of it), then delete it. If the rename fails
    because another process moved it first, the outcome is the same."""
    aside = folder.parent / f"{_temp_prefix(folder)}{secrets.token_hex(4)}"
    try:
        os.rename(folder, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


_TEMP = re.compile(r"\.[0-9a-f]{16}-(?:(?P<host>.+)-(?P<pid>\d+)-)?[^-]+")


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


__all__ = ["Scenario", "BaseModels", "BuildSummary", "base_folder", "base_models", "check_entry", "is_cached",
           "remove_stale_temps", "Split"]
