"""No unlearning: θ_poisoned itself, the reference at removal 0 and cost 0."""
from __future__ import annotations

PAPER = "reference: the poisoned model (Pawelczyk et al., ICLR 2025, arXiv 2406.17216)"
KIND = "reference"
COST = 0.0


def unlearn(model, data, budget):
    return model
