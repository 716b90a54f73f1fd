"""Shared steps of attacks that need models of their own (a clean surrogate, a target model) and
held-out evaluation points.

An attack whose `craft` names `victim` gets the scenario's model builder, recipe and test split, and can
train a surrogate like its victim (`surrogate` with `victim.build`). Without one, `craft` sees only the
training split: such attacks set a few training points aside as their evaluation points (`hold_out`:
never trained on by θ_poisoned or θ_retrain, they play the role of test points) and train a `small_cnn`
of their own (`small_cnn_builder`)."""
from __future__ import annotations

import math
from typing import Callable

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


def small_cnn_builder(train: Split, *, width: int, num_classes: int = 10) -> Callable[[int], torch.nn.Module]:
    """seed -> a freshly initialised `small_cnn` of `width`, normalised by `train`'s statistics, on
    `train`'s device (global RNG untouched): the surrogate of attacks that are given no victim."""
    mean, std = float(train.x.mean()), float(train.x.std())
    stub = DataSet("surrogate", train, train, train, num_classes, (mean,) * train.x.shape[1], (std,) * train.x.shape[1])

    def build(seed: int) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return models.get("small_cnn")(stub, width=width).to(train.x.device)
    return build


def surrogate(train: Split, *, seed: int, build: Callable[[int], torch.nn.Module],
              recipe: Recipe) -> tuple[torch.nn.Module, int]:
    """`build(s)` trained from scratch on `train` with `recipe` (init and order from a seed drawn from
    `seed`'s own stream, global RNG untouched); returns (model in eval mode, units = 3 x epochs x n)."""
    init_seed = int(torch.randint(2**31 - 1, (1,), generator=generator(seed, _INIT)))
    model = build(init_seed)
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
