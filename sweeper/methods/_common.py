"""Plain helpers that methods call (no method inherits from another)."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..budget import Budget
from ..data import IndexStream, Split, generator
from ..training import Recipe, sgd

FORWARD, BACKWARD = 1, 2
TRAIN_STEP = FORWARD + BACKWARD  # units per example of one forward + backward pass


@dataclass
class UnlearnData:
    """What a method may use: the retain and forget sets (S_corr = both), the scenario's optimiser
    recipe and a seed for its own randomness. θ_retrain is deliberately not here."""
    retain: Split
    forget: Split
    num_classes: int
    recipe: Recipe
    seed: int
    cache_dir: Path | None = None  # per (scenario, seed): where hyperparameter-free results are shared

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """A hyperparameter-free result (SSD's importances, SalUn's saliency) computed once per
        (scenario, seed) and reused by every trial. The caller still charges its full cost to every
        trial (DESIGN §3): caching saves wall time, not units."""
        if self.cache_dir is None:
            return compute()
        path = Path(self.cache_dir) / f"{key}.pt"
        if path.exists():
            return torch.load(path, weights_only=False)
        value = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        torch.save(value, tmp)
        os.replace(tmp, path)  # atomic: concurrent trials never read half a file
        return value

    def gen(self, stream: int) -> torch.Generator:
        return generator(self.seed, 100 + stream)

    @property
    def batch_size(self) -> int:
        return self.recipe.batch_size


def optimizer(model: nn.Module, data: UnlearnData, lr: float, params=None) -> torch.optim.Optimizer:
    """The retraining recipe's SGD (momentum, weight decay) at the method's own learning rate."""
    return sgd(params if params is not None else model.parameters(), data.recipe, lr)


def step_loop(model: nn.Module, budget: Budget, opt: torch.optim.Optimizer, n: int, gen: torch.Generator,
              batch_size: int, per_item: int, loss_fn: Callable[[torch.Tensor], torch.Tensor],
              after_step: Callable[[], None] | None = None) -> nn.Module:
    """SGD steps on batches of indices into a set of size `n` until the budget has no room.

    `per_item` is the units one item of a step costs (3 for one example forward + backward, 6 for a
    pair of examples). The last batch before each checkpoint is trimmed to fit exactly."""
    stream = IndexStream(n, gen)
    model.train()
    while k := budget.room(batch_size, per_item):
        loss = loss_fn(stream.take(k))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step()
        budget.charge(per_item * k)
    model.eval()
    return model
