"""Fisher forgetting: noise on every parameter, scaled by its inverse Fisher information on retain.

Golatkar, Achille, Soatto, "Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep
Networks" (CVPR 2020, arXiv 1911.04933). θ ← θ + (λσ²)^{1/4}·F_r^{-1/4} ⊙ n, n ~ N(0, I), with F_r the
diagonal of the empirical Fisher on retain (mean of squared per-example loss gradients at the true
labels, eval mode), clamped below at 1e-8; no training. `alpha` is the product λσ² (only it matters);
default 1e-6 is the noise scale α of the SSD repository's `FisherForgetting` (its code uses
var = α/F, not the paper's formula pinned here). The reference code's expectation over predicted
labels would cost one backward per class per example; the per-example Fisher here costs 3 units per
retain example, is hyperparameter-free, computed once per (scenario, seed) and charged to every trial."""
from __future__ import annotations

import torch
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from ..data import Split
from ._common import TRAIN_STEP, cache_key, device_of, to_cpu, to_device

PAPER = "Golatkar et al., CVPR 2020, arXiv 1911.04933"
KIND = "fixed"
PER_EXAMPLE_GRADIENT = TRAIN_STEP  # DESIGN §3: a per-example gradient costs 3 units
FISHER_FLOOR = 1.0e-8
CHUNK = 256  # examples per vmapped batch: memory only, the result does not depend on it


def retain_fisher(model, split: Split) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher: mean over examples of the squared per-example CE gradient."""
    model.eval()
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def loss(p, x, y):
        return F.cross_entropy(functional_call(model, (p, buffers), (x[None],)), y[None])

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for i in range(0, len(split), CHUNK):
        for n, g in per_example(params, split.x[i:i + CHUNK], split.y[i:i + CHUNK]).items():
            total[n] += g.pow(2).sum(0)
    return {n: t / len(split) for n, t in total.items()}


@torch.no_grad()
def add_noise(model, fisher, alpha, gen: torch.Generator) -> None:
    """θ ← θ + α^{1/4}·max(F, 1e-8)^{-1/4} ⊙ n, the noise drawn on the CPU from `gen`."""
    for name, p in model.named_parameters():
        n = torch.randn(p.shape, generator=gen).to(p.device)
        p.add_(alpha**0.25 * fisher[name].clamp(min=FISHER_FLOOR).pow(-0.25) * n)


def unlearn(model, data, budget, *, alpha=1.0e-6):
    if not budget.charge_fixed(PER_EXAMPLE_GRADIENT * len(data.retain)):
        return model
    device = device_of(model)
    fisher = data.shared(cache_key("fisher_forget_fisher", device.type),
                         lambda: to_cpu(retain_fisher(model, data.retain)))
    add_noise(model, to_device(fisher, device), alpha, data.gen(1))
    return model.eval()
