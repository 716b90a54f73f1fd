"""Partial discovery: the unlearner is told only some of the poisons (issue 21).

Goel, Prabhu, Torr, Dokania, Kumaraguru, "Corrective Machine Unlearning", TMLR 2024 (code:
drimpossible/corrective-unlearning-bench, `--deletion_size`): a uniform random subset of the poisons is
identified, at levels from 10% to 100%. Here level d identifies ⌈d·|poisons|⌉ of a seed's poisons, the
first ones of one permutation drawn from the seed, so the levels are nested (the 10% subset lies inside the
25% subset, ...). The unidentified poisons stay in the retain set the method receives: the unlearner
believes them clean. At d = 1 every poison is identified and nothing differs from a sweep without discovery.

Built so far: the subsets and the split a method receives (`split`), per-level keys for what a method caches
from its forget set (`shared_folder`), and GUS over identified and unidentified poisons separately
(`context_subset`, used by the trial's evaluator). The sweep axis (a cell per attack and level) is
sweeper/phases.py's; the `retrain_identified` reference is scenario.train_identified, cached by
basecache.identified_retrain; the two normalisations are report/summary.py's.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from .data import Split, generator
from .errors import SweeperError

FULL = 1.0
_STREAM = 21  # generator stream of the identification order (attacks use 11-13; methods take their own)


def check_level(level: float) -> float:
    level = float(level)
    if not 0 < level <= 1:
        raise SweeperError(f"discovery level {level!r} must be in (0, 1]: the fraction of poisons identified")
    return level


def identified_positions(n_poisons: int, seed: int, level: float) -> torch.Tensor:
    """Positions (0 … n_poisons − 1, into the poison list) of the poisons identified at `level`, sorted: the
    first ⌈level·n⌉ of one permutation drawn from `seed`, so a lower level's subset lies inside a higher
    one's. Level 1: every position, without drawing anything."""
    level = check_level(level)
    if level == FULL:
        return torch.arange(n_poisons)
    k = max(1, math.ceil(round(level * n_poisons, 9)))  # round: 0.1 · 30 is 3.0000000000000004, not 4 poisons
    order = torch.randperm(n_poisons, generator=generator(seed, _STREAM))
    return order[:k].sort().values


def identified_mask(n_poisons: int, seed: int, level: float) -> torch.Tensor:
    mask = torch.zeros(n_poisons, dtype=torch.bool)
    mask[identified_positions(n_poisons, seed, level)] = True
    return mask


def split(train: Split, forget: torch.Tensor, seed: int, level: float) -> tuple[Split, Split]:
    """(retain, forget) as the unlearner receives them at `level`: the forget set is the identified poisons;
    the retain set is every other training point, the unidentified poisons included (as trained: poisoned).
    `forget` holds the poisons' indices into `train`, sorted, as attacks craft them."""
    known = forget[identified_positions(len(forget), seed, level)]
    keep = torch.ones(len(train), dtype=torch.bool)
    keep[known] = False
    return train.subset(keep), train.subset(known)


def shared_folder(base_shared: Path, level: float) -> Path:
    """Where hyperparameter-free results computed from the forget set (SSD's importances, SalUn's saliency)
    are cached: the entry's own folder at level 1 (as before discovery existed), one folder per level
    otherwise (a forget set of other poisons gives other importances)."""
    level = check_level(level)
    return Path(base_shared) if level == FULL else Path(base_shared) / f"discovery-{level:g}"


def context_subset(context: dict, per_poison: tuple[str, ...], mask: torch.Tensor) -> dict:
    """An attack's measurement context restricted to the poisons in `mask` (a bool per poison): the entries
    the attack names as one row per poison (its PER_POISON) are cut, the rest kept. Only attacks whose effect
    is a mean over their poisons declare PER_POISON (Gaussian GUS)."""
    return {k: v[mask] if k in per_poison else v for k, v in context.items()}
