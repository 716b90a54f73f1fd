"""Small helpers for method tests: run a method from θ_poisoned under a budget, outside any sweep."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.nn import functional as F

from sweeper import methods as _methods
from sweeper.budget import Budget
from sweeper.registry import methods


def unlearn_data(base, seed=None):
    p = base.poisoning
    seed = base.seed if seed is None else seed
    return _methods.UnlearnData(p.retain, p.forget_set, base.data.num_classes, base.scenario.recipe, seed,
                                initial=lambda: base.scenario.build_model(base.data, seed).state_dict())


def run_method(base, name, budgets=(0.02,), on_checkpoint=None, model=None, retrain_units=None, **hparams):
    """θ_poisoned (or `model`) after `name` under `budgets` (fractions of `retrain_units`, by default the
    scenario's); returns (model, budget, [(fraction, units, state)])."""
    model = model if model is not None else base.model("poisoned")
    seen = []

    def record(fraction, units):
        seen.append((fraction, units, {k: v.clone() for k, v in model.state_dict().items()}))
        if on_checkpoint:
            on_checkpoint(fraction, units)

    budget = Budget(retrain_units or base.retrain_units, list(budgets), record)
    method = methods.get(name)
    method.unlearn(model, unlearn_data(base), budget, **hparams)
    if _methods.kind(method) == "fixed":
        budget.finish()
    return model, budget, seen


@torch.no_grad()
def mean_loss(model, split):
    model.eval()
    return float(F.cross_entropy(model(split.x), split.y))


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# The installed console script. `python -m sweeper.cli` run from the checkout would import the source
# tree instead, where the bundled experiments and search spaces are not packages (CI installs non-editable).
SWEEPER = str(Path(sys.executable).with_name("sweeper"))
