"""The scenario's training recipe: how θ_poisoned and θ_retrain are trained from scratch.

Unlearning methods reuse its optimiser settings (momentum, weight decay, batch size) so that they differ
from retraining only in what they search (lr, their own knobs) and in how much compute they get."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .data import IndexStream, Split, generator


@dataclass(frozen=True)
class Recipe:
    epochs: int = 60
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5.0e-4

    def retrain_units(self, n_clean: int) -> int:
        """C_retrain = 3 x epochs x |S_clean| (forward 1 + backward 2 per example; DESIGN §3)."""
        return 3 * self.epochs * n_clean

    def as_dict(self) -> dict:
        return asdict(self)


def sgd(params, recipe: Recipe, lr: float) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)


def train_from_scratch(model: nn.Module, split: Split, recipe: Recipe, seed: int) -> nn.Module:
    """SGD with a per-step cosine schedule over `recipe.epochs` passes of `split` (order from `seed`)."""
    steps_per_epoch = -(-len(split) // recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    opt = sgd(model.parameters(), recipe, recipe.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    stream = IndexStream(len(split), generator(seed, stream=1))
    model.train()
    for _ in range(recipe.epochs):
        for _ in range(steps_per_epoch):
            idx = stream.take(min(recipe.batch_size, len(split)))
            loss = F.cross_entropy(model(split.x[idx]), split.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model
