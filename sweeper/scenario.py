"""A scenario (data set, model, attack, training recipe), its key, and what its base models are: θ_poisoned
and θ_retrain trained from scratch, and the crafted poisoning, written into a folder (train_base) and read
back from one (read_base). Caching those folders (checksums, publishing, object stores) is
sweeper/basecache.py's; nothing here knows where a folder lives or whether it is whole."""
from __future__ import annotations

import hashlib
import inspect
import json
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import attacks as _attacks  # noqa: F401  (registers attacks)
from . import datasets as _datasets  # noqa: F401
from . import discovery
from . import models as _models  # noqa: F401
from .attacks import Poisoning, Victim
from .data import DataSet, Split
from .metrics import accuracy
from .models import BlockModel
from .registry import attacks, datasets, models
from .training import Recipe, full_precision, prepare, train_from_scratch
from .workercache import remember

BASE_VERSION = 8  # bump when training, crafting or evaluation code changes what a cached model means
# (3: manifest.json carries checksums; older entries are simply not found and get rebuilt;
#  4: gradient_canceling crafts as its authors do, so version-3 entries under its old parameters are stale;
#  5: poisoning.pt holds plain tensors (loaded with weights_only=True), crafting and training on the device;
#  6: witches_brew crafts against the scenario's own model and recipe with the reference's step size;
#  7: the manifest records the content digests of the data (`data`), which every MLflow run names as its inputs;
#  8: C_retrain counts whole batches (Recipe.retrain_units), and the manifest records θ_retrain's learning curve)
FILES = ("poisoned.pt", "retrain.pt", "poisoning.pt")  # what train_base writes (and a manifest vouches for)
_DATASETS: OrderedDict[str, DataSet] = OrderedDict()  # see sweeper/workercache.py


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
        """The name of (self, seed)'s cache entry. It covers the scenario, the seed, the recipe, BASE_VERSION
        and torch's release, so changing any of them never reuses a stale model."""
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


def train_base(scenario: Scenario, seed: int, data: DataSet, folder: Path, device: torch.device) -> dict:
    """Craft the poisoning and train θ_poisoned and θ_retrain on `device`, writing FILES into `folder`;
    returns what the entry's manifest records about them (the cache adds the files' checksums)."""
    attack = attacks.get(scenario.attack)
    poisoning = _craft(scenario, seed, data, device)
    on_device = DataSet(data.name, data.train, data.val.to(device), data.test.to(device), data.num_classes,
                        data.mean, data.std)
    timings = {}
    refs = {}
    curve = LearningCurve(on_device.val, device)
    for which, split in (("poisoned", poisoning.train), ("retrain", poisoning.retain)):
        start = time.perf_counter()
        model = train_from_scratch(scenario.build_model(data, seed), split.to(device), scenario.recipe, seed,
                                   after_epoch=curve if which == "retrain" else None)
        _synchronize(device)
        timings[which] = time.perf_counter() - start - (curve.seconds if which == "retrain" else 0.0)
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, folder / f"{which}.pt")
        refs[which] = _reference_metrics(model, on_device, poisoning, attack)
    torch.save(_poisoning_state(poisoning), folder / "poisoning.pt")
    return {
        "scenario": scenario.as_dict(), "seed": seed, "version": BASE_VERSION,
        "poison_indices": poisoning.forget.tolist(), "attack_params": scenario.attack_params,
        "n_train": len(poisoning.train), "n_clean": len(poisoning.train) - len(poisoning.forget),
        "retrain_units": scenario.recipe.retrain_units(len(poisoning.train) - len(poisoning.forget)),
        "craft_seconds": poisoning.craft_seconds, "craft_units": poisoning.craft_units,
        "train_seconds": timings, "metrics": refs, "torch": torch.__version__, "device": str(device),
        "retrain_curve": curve.accuracies,
        "data": {"dataset": data.name, "train": poisoning.train.digest(), "n_train": len(poisoning.train),
                 "val": data.val.digest(), "n_val": len(data.val), "test": data.test.digest(),
                 "n_test": len(data.test)},
    }


class LearningCurve:
    """θ_retrain's validation accuracy after each epoch of its training (`train_from_scratch`'s after_epoch),
    for the report's "epochs to the retrain's quality"; its seconds are not the training's."""

    def __init__(self, val: Split, device: torch.device):
        self.val, self.device = val, device
        self.accuracies: list[float] = []
        self.seconds = 0.0

    def __call__(self, epoch: int, model) -> None:
        _synchronize(self.device)
        start = time.perf_counter()
        with full_precision():
            self.accuracies.append(accuracy(model, self.val))
        _synchronize(self.device)
        self.seconds += time.perf_counter() - start


def epochs_to_quality(curve: list[float], final: float, tolerance: float) -> int | None:
    """The first epoch (1-based) after which θ_retrain's validation accuracy was within `tolerance` of its
    final `final`; None without a curve (bases cached by older versions)."""
    return next((i + 1 for i, acc in enumerate(curve) if acc >= final - tolerance), None) if curve else None


IDENTIFIED_FILE = "retrain_identified.pt"  # what train_identified writes


def train_identified(base: BaseModels, level: float, folder: Path, device: torch.device) -> dict:
    """θ_retrain_identified of `base`'s (scenario, seed) at discovery `level`, written into `folder`: trained
    from scratch exactly as θ_retrain is (same initialisation, recipe and seed) on the training set less the
    poisons identified at `level` (discovery.split), so it saw every unidentified poison. At level 1 that
    set is the clean retain set and the model is θ_retrain. Returns what the entry's manifest records."""
    retain, forget = discovery.split(base.poisoning.train, base.poisoning.forget, base.seed, level)
    recipe = base.scenario.recipe
    start = time.perf_counter()
    model = train_from_scratch(base.scenario.build_model(base.data, base.seed), retain.to(device), recipe, base.seed)
    _synchronize(device)
    seconds = time.perf_counter() - start
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, folder / IDENTIFIED_FILE)
    return {"base": base.scenario.key(base.seed), "seed": base.seed, "discovery": level, "version": BASE_VERSION,
            "n_train": len(retain), "n_identified": len(forget), "retrain_units": recipe.retrain_units(len(retain)),
            "train_seconds": seconds, "torch": torch.__version__, "device": str(device)}


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


def read_base(scenario: Scenario, seed: int, data: DataSet, folder: Path, manifest: dict) -> BaseModels:
    """The base models train_base wrote into `folder` (checked by the caller: loading trusts the files)."""
    return BaseModels(scenario, seed, data, _load_poisoning(folder / "poisoning.pt"),
                      torch.load(folder / "poisoned.pt", weights_only=True),
                      torch.load(folder / "retrain.pt", weights_only=True), manifest, folder)


__all__ = ["Scenario", "BaseModels", "BASE_VERSION", "FILES", "IDENTIFIED_FILE", "read_base", "train_base",
           "train_identified", "Split"]
