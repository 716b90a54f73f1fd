"""SalUn: random-label unlearning restricted to the weights most salient for the forget loss.

Fan, Liu, Zhang, Wong, Wei, Liu, "SalUn: Empowering Machine Unlearning via Gradient-based Weight
Saliency in Both Image Classification and Generation" (ICLR 2024, arXiv 2310.12508). Saliency = |∇θ of
the forget loss at θ_poisoned| (summed over forget batches, eval mode, as their `generate_mask.py` but
without its optimiser steps); the mask keeps the top `mask_ratio` fraction of all parameter entries.
Then paired steps minimise CE(forget, random other labels) + α·CE(retain) (the paper's objective) and
only masked entries move: gradients and weight decay are masked, so the rest stay bit-identical, as in
their code's restoring of masked-out weights. Defaults: mask_ratio 0.5 and lr 0.013 (their README,
10 epochs); α = 1, the equal weighting of their code's forget and retain passes.

Cost: the saliency is hyperparameter-free, computed once per (scenario, seed), and every trial pays its
3·|forget| units before training, charged batch by batch through the budget (so spending never passes
a checkpoint; a checkpoint inside the saliency pass reports the model still unchanged)."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..data import IndexStream, Split
from ._common import TRAIN_STEP, cache_key, device_of, one_pass, other_labels, to_cpu, train_steps

PAPER = "Fan et al., ICLR 2024, arXiv 2310.12508"


def saliency(model, split: Split, batch_size: int) -> dict[str, torch.Tensor]:
    """|Σ over batches of ∇θ mean CE| on `split` (in its order), per parameter entry."""
    model.eval()
    names, params = zip(*model.named_parameters())
    total = [torch.zeros_like(p) for p in params]
    for i in range(0, len(split), batch_size):
        loss = F.cross_entropy(model(split.x[i:i + batch_size]), split.y[i:i + batch_size])
        for t, g in zip(total, torch.autograd.grad(loss, params)):
            t += g
    return {n: t.abs() for n, t in zip(names, total)}


def top_mask(scores: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """True on the top `ratio` fraction of all entries by score (ties broken by position)."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    keep = torch.zeros(len(flat), dtype=torch.bool)
    keep[torch.argsort(flat, descending=True, stable=True)[:int(len(flat) * ratio)]] = True
    return dict(zip(scores, keep.split([s.numel() for s in scores.values()])))


def unlearn(model, data, budget, *, lr=0.013, mask_ratio=0.5, alpha=1.0):
    r, f = data.retain, data.forget
    device = device_of(model)
    scores = data.shared(cache_key("salun_saliency", f"b{data.batch_size}", device.type),
                         lambda: to_cpu(saliency(model, f, data.batch_size)))
    if not one_pass(budget, len(f), data.batch_size, TRAIN_STEP, lambda k: None):
        return model.eval()
    params = list(model.parameters())
    masks = [m.view_as(p).to(device, p.dtype) for p, m in zip(params, top_mask(scores, mask_ratio).values())]
    opt = torch.optim.SGD(params, lr=lr, momentum=data.recipe.momentum)  # weight decay: masked, below
    r_stream, f_stream = IndexStream(len(r), data.gen(0)), IndexStream(len(f), data.gen(1))
    label_gen = data.gen(2)

    def step(k: int) -> None:
        fi, ri = f_stream.take(k), r_stream.take(k)
        loss = (F.cross_entropy(model(f.x[fi]), other_labels(f.y[fi], data.num_classes, label_gen))
                + alpha * F.cross_entropy(model(r.x[ri]), r.y[ri]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for p, m in zip(params, masks):
                p.grad.add_(p, alpha=data.recipe.weight_decay).mul_(m)
        opt.step()

    train_steps(budget, data.batch_size, 2 * TRAIN_STEP, step, model.train)
    return model.eval()
