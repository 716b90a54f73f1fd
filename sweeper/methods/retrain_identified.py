"""Retraining from scratch on what the unlearner was told: the training set less the identified poisons
(Goel et al., "Corrective Machine Unlearning", TMLR 2024: retraining without only the identified poisons).

The reference of a discovery level below 1 (sweeper/discovery.py): as good as retraining with what you
know? Sweeps evaluate the cached θ_retrain_identified (basecache.identified_retrain), which is this
function's output for the same scenario, seed and level; at level 1 it is θ_retrain. Its cost is its own
retraining, in units of the gold C_retrain (slightly above 1: it trains on the unidentified poisons too)."""
from __future__ import annotations

from .retrain import unlearn  # noqa: F401  (the same training; `data.retain` at a level below 1 holds the
#                                            clean points and the unidentified poisons)

PAPER = "reference: retraining without the identified poisons (Goel et al., TMLR 2024, arXiv 2402.14015)"
KIND = "reference"
COST = None  # its own retraining, on more points than the clean ones: 1 + the unidentified poisons' share of C_retrain
