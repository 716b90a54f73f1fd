"""ℓ1-sparse unlearning: GD on retain plus γ·‖θ‖₁, with γ decayed linearly to 0.

Jia, Liu, Ram, Yao, Liu, Liu, Sharma, Liu, "Model Sparsity Can Simplify Machine Unlearning" (NeurIPS
2023, arXiv 2304.04934). Their code decays γ linearly over the unlearning epochs; here the decay is a
function of units spent only: γ(u) = γ·max(0, 1 − u / (decay_fraction·C_retrain)), so a checkpoint's
model never depends on the trial's later checkpoints. Defaults: lr 0.01 (their README, 10 epochs);
decay_fraction 0.055 = those 10 epochs over their 182-epoch retraining; γ 5e-5 (the low end of the
5e-5 – 1e-4 reported for the method; unverified). ‖θ‖₁ is over all parameters, as their code."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..data import IndexStream
from ._common import TRAIN_STEP, optimizer, sgd_step, train_steps

PAPER = "Jia et al., NeurIPS 2023, arXiv 2304.04934"


def l1_weight(gamma: float, decay_fraction: float, spent: int, retrain_units: int) -> float:
    return gamma * max(0.0, 1.0 - spent / (decay_fraction * retrain_units))


def unlearn(model, data, budget, *, lr=0.01, gamma=5.0e-5, decay_fraction=0.055):
    r = data.retain
    opt = optimizer(model, data, lr)
    stream = IndexStream(len(r), data.gen(0))

    def step(k: int) -> None:
        idx = stream.take(k)
        loss = F.cross_entropy(model(r.x[idx]), r.y[idx])
        weight = l1_weight(gamma, decay_fraction, budget.spent, budget.retrain_units)
        if weight > 0:
            loss = loss + weight * torch.cat([p.abs().flatten() for p in model.parameters()]).sum()
        sgd_step(opt, loss)

    train_steps(budget, data.batch_size, TRAIN_STEP, step, model.train)
    return model.eval()
