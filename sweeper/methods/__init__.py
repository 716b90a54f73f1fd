"""Unlearning methods: every public module here is registered under its name.

A method module exposes `unlearn(model, data, budget, *, <hyperparameters with defaults>)`, which
changes `model` in place within `budget`, and `PAPER` (its reference). `KIND` is "anytime" (default:
spends units step by step), "fixed" (one fixed-cost pass) or "reference" (`none`, `retrain`: evaluated
from the cached base models at cost `COST`, a fraction of C_retrain)."""
from __future__ import annotations

import inspect
from types import ModuleType

from ..registry import methods, register_package
from ._common import UnlearnData

register_package(methods, __name__)


def kind(method: ModuleType) -> str:
    return getattr(method, "KIND", "anytime")


def modalities(method: ModuleType) -> tuple[str, ...]:
    """The data a method is made for, which `methods: all` follows (any method runs where it is named)."""
    return tuple(getattr(method, "MODALITIES", ("image", "text")))


def worst_fraction(method: ModuleType, budgets) -> float:
    """The most one trial of `method` over `budgets` may spend, in retrains: the largest budget, or their sum
    for a method that may start over at each checkpoint (`RESTARTS`: scratch's compressed schedule)."""
    return float(sum(budgets)) if getattr(method, "RESTARTS", False) else float(max(budgets))


def hyperparameters(method: ModuleType) -> dict[str, object]:
    """The method's keyword-only hyperparameters and their defaults (the first point a sweep tries)."""
    sig = inspect.signature(method.unlearn)
    return {p.name: p.default for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY}


__all__ = ["UnlearnData", "kind", "hyperparameters", "worst_fraction"]
