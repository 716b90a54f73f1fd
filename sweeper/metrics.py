"""Accuracy, membership inference, removal and the search objective (docs/architecture.md, Removal,
Objective, Membership inference)."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from .data import Split

ACCURACY_TOLERANCE = 0.05  # objective: removal counts only within 0.05 of retrain's validation accuracy
EQUIVALENT_ACC = 0.02   # "equivalent to retrain" also needs test accuracy within 0.02 of retrain's (report.stats);
#                         also how close θ_retrain's learning curve must come to its final accuracy (trial._slack)
DIVERGED = -10.0           # objective of a run with any non-finite metric
MIA_MIN_NONMEMBERS = 1000  # draw several transformed copies of held-out points below this


@torch.no_grad()
def accuracy(model: torch.nn.Module, split: Split, batch: int = 1024) -> float:
    model.eval()
    correct = sum(int((model(split.x[i:i + batch]).argmax(1) == split.y[i:i + batch]).sum())
                  for i in range(0, len(split), batch))
    return correct / len(split)


@torch.no_grad()
def losses(model: torch.nn.Module, split: Split, batch: int = 1024) -> torch.Tensor:
    model.eval()
    return torch.cat([F.cross_entropy(model(split.x[i:i + batch]), split.y[i:i + batch], reduction="none")
                      for i in range(0, len(split), batch)]).double().cpu()


def membership_inference(model: torch.nn.Module, members: Split, nonmembers: Split) -> dict[str, float]:
    """Loss-threshold attack (score = −loss): AUC and TPR at 1% FPR, members = forget set as trained."""
    s_in, s_out = -losses(model, members).numpy(), -losses(model, nonmembers).numpy()
    if not (np.isfinite(s_in).all() and np.isfinite(s_out).all()):
        return {"mia/auc": math.nan, "mia/tpr_at_1fpr": math.nan, "mia/n_nonmembers": len(s_out)}
    threshold = np.quantile(s_out, 0.99)
    return {"mia/auc": auc(s_in, s_out),
            "mia/tpr_at_1fpr": float((s_in > threshold).mean()),
            "mia/n_nonmembers": len(s_out)}


def auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """ROC AUC of scores: P(a positive scores above a negative), ties counting one half (the Mann-Whitney U
    over n_pos·n_neg; what sklearn's roc_auc_score computes, tested equal, without its 2 s import in every
    worker that runs a fresh trial)."""
    ordered = np.sort(negatives)
    below = np.searchsorted(ordered, positives, side="left")
    tied = np.searchsorted(ordered, positives, side="right") - below
    return float((below.sum() + 0.5 * tied.sum()) / (len(positives) * len(negatives)))


def removal(m_poisoned: float, m_unlearned: float, m_retrain: float) -> float:
    """0 = nothing removed, 1 = as good as retraining; can leave [0, 1]."""
    gap = m_poisoned - m_retrain
    return (m_poisoned - m_unlearned) / gap if gap != 0 else math.nan


def objective(removal_value: float, acc_val: float, acc_val_retrain: float, *, accuracy_constrained: bool,
              metrics: dict[str, float]) -> float:
    if not all(math.isfinite(v) for v in metrics.values() if isinstance(v, (int, float))):
        return DIVERGED
    gap = acc_val_retrain - acc_val
    if accuracy_constrained and gap > ACCURACY_TOLERANCE:
        return -1.0 - gap
    return removal_value
