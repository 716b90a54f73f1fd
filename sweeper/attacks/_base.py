"""What every attack returns: the corrupted training set, the forget indices and an evaluation context."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..data import Split
from ..training import Recipe


@dataclass
class Poisoning:
    train: Split                # S_corr: clean inputs plus float residuals on the poisons (labels as trained)
    forget: torch.Tensor        # indices into `train` of the poisons (the forget set)
    context: dict[str, torch.Tensor | float | int] = field(default_factory=dict)  # what `effect` needs
    craft_seconds: float = 0.0  # recorded, never charged to unlearning
    craft_units: int = 0

    def retain_mask(self) -> torch.Tensor:
        mask = torch.ones(len(self.train), dtype=torch.bool)
        mask[self.forget] = False
        return mask

    @property
    def retain(self) -> Split:
        return self.train.subset(self.retain_mask())

    @property
    def forget_set(self) -> Split:
        return self.train.subset(self.forget)


@dataclass(frozen=True)
class Victim:
    """What the scenario will train on the poisoned set, for attacks that model their victim (a
    surrogate of the same architecture and recipe) or need the held-out test split (targets). `craft`
    receives it as `victim=` only if its signature names that keyword."""
    build: Callable[[int], torch.nn.Module]  # a freshly initialised victim model from a seed, on the device
    recipe: Recipe
    test: Split                               # the official test split, on the device
    num_classes: int

    @property
    def device(self) -> torch.device:
        return self.test.x.device
