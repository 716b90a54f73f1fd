"""Retraining from scratch on the retain set: the gold standard, at cost 1 (= C_retrain) by definition.

Sweeps evaluate the cached θ_retrain, which is this function's output for the same scenario and seed
(same initialisation, recipe and data order); `unlearn` exists to make that definition executable."""
from __future__ import annotations

from ..training import train_from_scratch

PAPER = "reference: retraining on S_clean (Pawelczyk et al., ICLR 2025, arXiv 2406.17216)"
KIND = "reference"
COST = 1.0


def unlearn(model, data, budget, *, fresh_model):
    """`fresh_model` is the scenario's freshly initialised model for this seed; θ_poisoned is ignored."""
    budget.charge_fixed(data.recipe.retrain_units(len(data.retain)))
    return train_from_scratch(fresh_model, data.retain, data.recipe, data.seed)
