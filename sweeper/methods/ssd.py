"""Selective Synaptic Dampening: shrink the parameters far more important to forget than to S_corr.

Foster, Schoepf, Brintrup, "Fast Machine Unlearning Without Retraining Through Selective Synaptic
Dampening" (AAAI 2024, arXiv 2308.07707). No training: importances are squared mini-batch loss
gradients averaged over batches (eval mode), I_D over S_corr (retain then forget, unshuffled) and I_f
over forget; where I_f > α·I_D, θ ← θ·min(λ·I_D / I_f, 1). As the reference code (`ssd.py`,
`forget_random_main.py`: batch 128, S_corr = ConcatDataset((retain, forget)), unshuffled); defaults
α = 10, λ = 1 from that code. The importances are hyperparameter-free: computed once per (scenario,
seed) and their cost, 3·|S_corr| + 3·|forget| units, charged to every trial."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..data import Split
from ._common import TRAIN_STEP, cache_key, device_of, to_cpu, to_device

PAPER = "Foster et al., AAAI 2024, arXiv 2308.07707"
KIND = "fixed"
IMPORTANCE_BATCH = 128  # reference: both importance loaders at batch 128 (recorded in the cache key)


def importances(model, split: Split, batch_size: int = IMPORTANCE_BATCH) -> dict[str, torch.Tensor]:
    """Mean over mini-batches (in `split`'s order) of the squared gradient of the batch's mean CE."""
    model.eval()
    names, params = zip(*model.named_parameters())
    total = [torch.zeros_like(p) for p in params]
    batches = range(0, len(split), batch_size)
    for i in batches:
        loss = F.cross_entropy(model(split.x[i:i + batch_size]), split.y[i:i + batch_size])
        for t, g in zip(total, torch.autograd.grad(loss, params)):
            t += g.pow(2)
    return {n: t / len(batches) for n, t in zip(names, total)}


def corrupted_set(data) -> Split:
    """S_corr in the reference's order: retain, then forget."""
    return Split(torch.cat([data.retain.x, data.forget.x]), torch.cat([data.retain.y, data.forget.y]))


@torch.no_grad()
def dampen(model, imp_all, imp_forget, alpha, lam) -> None:
    """θ ← θ·min(λ·I_D/I_f, 1) where I_f > α·I_D; every other parameter is left bit-identical."""
    for name, p in model.named_parameters():
        selected = imp_forget[name] > alpha * imp_all[name]
        scale = (lam * imp_all[name] / imp_forget[name]).clamp(max=1.0)
        p.copy_(torch.where(selected, p * scale, p))


def unlearn(model, data, budget, *, alpha=10.0, lam=1.0):
    units = TRAIN_STEP * (len(data.retain) + 2 * len(data.forget))
    if not budget.charge_fixed(units):
        return model
    device = device_of(model)

    def compute() -> dict:
        return {"batch_size": IMPORTANCE_BATCH,
                "all": to_cpu(importances(model, corrupted_set(data))),
                "forget": to_cpu(importances(model, data.forget))}

    imp = data.shared(cache_key("ssd_importances", f"b{IMPORTANCE_BATCH}", device.type), compute)
    dampen(model, to_device(imp["all"], device), to_device(imp["forget"], device), alpha, lam)
    return model.eval()
