"""Shared steps of attacks that need models of their own (a clean surrogate, a target model) and
held-out evaluation points.

`craft` sees only the training split, so such attacks set a few training points aside as their
evaluation points (never trained on by θ_poisoned or θ_retrain: they play the role of test points)
and train their own surrogate, a `small_cnn` of the attack's chosen width, from a seed."""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ..data import DataSet, Split, generator
from ..registry import models
from ..training import Recipe, train_from_scratch

_HOLDOUT, _INIT = 21, 22  # generator streams shared by attacks: held-out split, surrogate init seed


def hold_out(train: Split, n: int, seed: int) -> tuple[Split, Split]:
    """(rest, held_out): `n` random points set aside, the rest in their original order."""
    order = torch.randperm(len(train), generator=generator(seed, _HOLDOUT))
    keep = torch.ones(len(train), dtype=torch.bool)
    keep[order[:n]] = False
    return train.subset(keep), train.subset(order[:n].sort().values)


def surrogate(train: Split, *, seed: int, width: int, epochs: int, num_classes: int = 10,
              lr: float = 0.05) -> tuple[torch.nn.Module, int]:
    """A small_cnn trained from scratch on `train` (init and order from `seed`, global RNG untouched);
    returns (model in eval mode, units spent = 3 x epochs x n)."""
    mean, std = float(train.x.mean()), float(train.x.std())
    stub = DataSet("surrogate", train, train, train, num_classes, (mean,) * train.x.shape[1], (std,) * train.x.shape[1])
    init_seed = int(torch.randint(2**31 - 1, (1,), generator=generator(seed, _INIT)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        model = models.get("small_cnn")(stub, width=width)
    recipe = Recipe(epochs=epochs, lr=lr)
    return train_from_scratch(model, train, recipe, init_seed), recipe.retrain_units(len(train))


def param_grads(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, create_graph: bool = False,
                reduction: str = "sum") -> list[torch.Tensor]:
    """∇_θ ℓ(θ; x, y) for the parameters that require grad (eval mode: BatchNorm uses running stats)."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss = F.cross_entropy(model(x), y, reduction=reduction)
    return list(torch.autograd.grad(loss, params, create_graph=create_graph))


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial rate."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_metrics(hits: torch.Tensor, prefix: str) -> dict[str, float]:
    """A success rate with its Wilson interval; `attack/effect_se` is the interval's half-width / 1.96,
    which stays positive at rates of 0 or 1 (a plain binomial SE would claim certainty there)."""
    n, k = int(hits.numel()), int(hits.sum())
    low, high = wilson(k, n)
    rate = k / n if n else math.nan
    return {f"{prefix}/success": rate, f"{prefix}/ci_low": low, f"{prefix}/ci_high": high, f"{prefix}/n": n,
            "attack/effect": rate, "attack/effect_se": (high - low) / (2 * 1.96)}
