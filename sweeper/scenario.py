"""A scenario (data set, model, attack, training recipe) and its base models, trained once per seed.

base/<hash>/ holds θ_poisoned and θ_retrain as state_dicts, the crafted poisoning and manifest.json.
The hash covers the scenario, the seed, the recipe and BASE_VERSION, so changing any of them (or the
code that trains, bumped by hand in BASE_VERSION) never reuses a stale model."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import attacks as _attacks  # noqa: F401  (registers attacks)
from . import datasets as _datasets  # noqa: F401
from . import models as _models  # noqa: F401
from .attacks import Poisoning
from .data import DataSet, Split
from .metrics import accuracy
from .models import BlockModel
from .registry import attacks, datasets, models
from .training import Recipe, train_from_scratch

BASE_VERSION = 2  # bump when training, crafting or evaluation code changes what a cached model means


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
        return datasets.get(self.dataset)(**self.dataset_params)

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
        return m.to(device).eval()


def _reference_metrics(model: BlockModel, data: DataSet, poisoning: Poisoning, attack) -> dict:
    return {"acc/val": accuracy(model, data.val), "acc/test": accuracy(model, data.test),
            **attack.effect(model, poisoning.context)}


def _train_base(scenario: Scenario, seed: int, data: DataSet, folder: Path) -> None:
    attack = attacks.get(scenario.attack)
    start = time.perf_counter()
    poisoning = attack.craft(data.train, seed=seed, **scenario.attack_params)
    poisoning.craft_seconds = poisoning.craft_seconds or time.perf_counter() - start
    timings = {}
    refs = {}
    for which, split in (("poisoned", poisoning.train), ("retrain", poisoning.retain)):
        start = time.perf_counter()
        model = train_from_scratch(scenario.build_model(data, seed), split, scenario.recipe, seed)
        timings[which] = time.perf_counter() - start
        torch.save(model.state_dict(), folder / f"{which}.pt")
        refs[which] = _reference_metrics(model, data, poisoning, attack)
    torch.save(poisoning.__dict__, folder / "poisoning.pt")
    manifest = {
        "scenario": scenario.as_dict(), "seed": seed, "version": BASE_VERSION,
        "poison_indices": poisoning.forget.tolist(), "attack_params": scenario.attack_params,
        "n_train": len(poisoning.train), "n_clean": len(poisoning.train) - len(poisoning.forget),
        "retrain_units": scenario.recipe.retrain_units(len(poisoning.train) - len(poisoning.forget)),
        "craft_seconds": poisoning.craft_seconds, "craft_units": poisoning.craft_units,
        "train_seconds": timings, "metrics": refs, "torch": torch.__version__,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))


def base_models(scenario: Scenario, seed: int, root: str | os.PathLike, data: DataSet | None = None) -> BaseModels:
    """Load the base models of (scenario, seed) from `root`, training them first if absent.

    Writes go to a temporary folder renamed into place, so concurrent callers (several trials, several
    processes) never see half a cache entry; if two train at once, the first rename wins."""
    data = data or scenario.load_data()
    folder = Path(root) / scenario.key(seed)
    if not (folder / "manifest.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            _train_base(scenario, seed, data, tmp)
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "manifest.json").exists():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    state = torch.load(folder / "poisoning.pt", weights_only=False)
    poisoning = Poisoning(**state)
    return BaseModels(scenario, seed, data, poisoning,
                      torch.load(folder / "poisoned.pt"), torch.load(folder / "retrain.pt"),
                      json.loads((folder / "manifest.json").read_text()), folder)


def is_cached(scenario: Scenario, seed: int, root: str | os.PathLike) -> bool:
    return (Path(root) / scenario.key(seed) / "manifest.json").exists()


__all__ = ["Scenario", "BaseModels", "base_models", "is_cached", "Split"]
