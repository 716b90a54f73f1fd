"""Relapse: does a removed poison come back after benign fine-tuning? (issue 21)

Siddiqui et al., "From Dormant to Deleted" (NeurIPS 2025; code: shoaibahmed/vision_relearning) fine-tune an
unlearned ResNet-18 on the retain set alone and see forget-set accuracy return, while a retrained model's
does not; Min et al. (NeurIPS 2024) see purified backdoors re-learned far faster than by a clean model. A
method whose "removed" poison returns has hidden it, not removed it.

Here, at each checkpoint of a fresh-seed run (the budgets the report selected), a deep copy of the model is
fine-tuned for `length` × the gold C_retrain units with the scenario recipe's optimiser (SGD, its momentum,
weight decay and batch size) at a stated learning rate, constant, on **clean points only**: the training set
less every poison, identified or not (a forget point is a poison), so the fine-tuning can teach no poison
back. On digits there are no unused held-out points, so this is the clean part of the training set. The
batches come from the relapse's own random stream of the seed (the same order for the unlearned model and
for θ_poisoned / θ_retrain of that seed: their difference is the models', not the data's). The trial's own
model, its optimiser state and its checkpoints are untouched (tested bit for bit), and relapse compute is
evaluation: timed as `cost/relapse_seconds`, never charged to the method's budget.

Relapsed removal = (m_p^R − m_u^R) / (m_p^R − m_r^R), every effect measured after the same relapse: clean
fine-tuning erodes θ_poisoned's effect too, and without this normalisation that erosion would read as removal.
Deviation from Siddiqui et al.: they fine-tune on the retain set (which holds no poison there); here the
retain set of a discovery level below 1 holds unidentified poisons, so the relapse data is the clean points,
as issue 21 asks. Not built: Min et al.'s re-tuning mode (k poisons added to the relapse data, with retrain +
the same k poisons as its control).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .data import IndexStream, Split, generator
from .methods._common import TRAIN_STEP
from .training import Recipe, sgd

_STREAM = 31  # generator stream of the relapse batches (attacks use 11-13, discovery 21)


@dataclass(frozen=True)
class Relapse:
    """What an experiment's `relapse:` asks: fine-tuning lengths in fractions of the gold C_retrain, and the
    learning rate (None: the recipe's)."""
    lengths: tuple[float, ...]
    lr: float | None = None

    def as_dict(self) -> dict:
        return {"lengths": list(self.lengths), "lr": self.lr}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Relapse | None":
        return None if not d else cls(tuple(float(x) for x in d["lengths"]), d.get("lr"))


def clean_points(train: Split, poisons: torch.Tensor) -> Split:
    """The training set less every poison (`poisons`: their indices into `train`)."""
    keep = torch.ones(len(train), dtype=torch.bool)
    keep[poisons.to(torch.long).cpu()] = False
    return train.subset(keep)


def steps(length: float, retrain_units: int, batch_size: int) -> int:
    """Whole batches that fit in `length` × C_retrain units."""
    return int(round(length * retrain_units)) // (TRAIN_STEP * batch_size)


def fine_tune(model: nn.Module, clean: Split, recipe: Recipe, lr: float, n_steps: int, seed: int) -> tuple[nn.Module, float]:
    """A deep copy of `model` after `n_steps` SGD steps on batches of `clean` drawn from the seed's relapse
    stream; returns it (in eval mode) and ‖Δθ‖, the L2 norm of the change of its parameters."""
    relapsed = copy.deepcopy(model)
    relapsed.train()
    opt = sgd(relapsed.parameters(), recipe, lr)
    stream = IndexStream(len(clean), generator(seed, _STREAM))
    batch = min(recipe.batch_size, len(clean))
    for _ in range(n_steps):
        idx = stream.take(batch).to(clean.x.device)
        loss = F.cross_entropy(relapsed(clean.x[idx]), clean.y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    relapsed.eval()
    with torch.no_grad():
        delta = sum(float(((a - b) ** 2).sum()) for a, b in zip(relapsed.parameters(), model.parameters())) ** 0.5
    return relapsed, delta


def measure(model: nn.Module, clean: Split, recipe: Recipe, spec: Relapse, retrain_units: int, seed: int,
            evaluate) -> dict[str, float]:
    """Each length's relapse of `model`, evaluated by `evaluate(model) -> metrics`: the metrics under
    `relapse<L>/`, with `relapse<L>/dtheta` and `relapse<L>/steps`; `cost/relapse_seconds` all of it together."""
    start = time.perf_counter()
    out: dict[str, float] = {}
    lr = spec.lr if spec.lr is not None else recipe.lr
    for length in spec.lengths:
        n = steps(length, retrain_units, min(recipe.batch_size, len(clean)))
        relapsed, delta = fine_tune(model, clean, recipe, lr, n, seed)
        prefix = f"relapse{length:g}/"
        out.update({prefix + k: v for k, v in evaluate(relapsed).items()})
        out.update({prefix + "dtheta": delta, prefix + "steps": float(n)})
    out["cost/relapse_seconds"] = time.perf_counter() - start
    return out
