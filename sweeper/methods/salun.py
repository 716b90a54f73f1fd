"""SalUn: random-label unlearning restricted to the weights most salient for the forget loss.

Fan, Liu, Zhang, Wong, Wei, Liu, "SalUn: Empowering Machine Unlearning via Gradient-based Weight
Saliency in Both Image Classification and Generation" (ICLR 2024, arXiv 2310.12508). Follows
github.com/OPTML-Group/Unlearn-Saliency, Classification/. Saliency = |Σ over forget batches of ∇θ of the
forget loss at θ_poisoned| (eval mode; generate_mask.py lines 25-48, without its optimiser steps); the
mask keeps the top `mask_ratio` fraction of all parameter entries (lines 57-79). Training follows
unlearn/RL.py's CIFAR-10 branch (lines 109-159): each epoch is one pass over forget with labels drawn
uniformly from all classes, fresh per batch (line 125), then one pass over retain with its true labels,
both at the recipe's batch size (their loaders use the training batch size, main_forget.py lines 38-47),
SGD with momentum and weight decay (unlearn/impl.py lines 68-73). Only masked entries move: gradients
and weight decay are masked, so the rest stay bit-identical, as RL.py's `_apply_mask_to_grads` and
`_restore_masked_params` (lines 11-34) achieve. Defaults: mask_ratio 0.5 and lr 0.013 (their README,
10 epochs); α weights the retain pass's loss (the paper's objective; the code's 1 is the default).

Cost: the saliency is hyperparameter-free, computed once per (scenario, seed), and every trial pays its
3·|forget| units before training, charged batch by batch through the budget (so spending never passes
a checkpoint; a checkpoint inside the saliency pass reports the model still unchanged). Each training
example costs 3 units; epochs are whole passes, so the schedule is a function of units spent.

Deliberate deviations: batches come from index streams (a fresh permutation per pass) rather than
DataLoaders; the warm-up and MultiStepLR of impl.py are not used (their milestones lie beyond the 10
unlearning epochs of the README)."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..data import IndexStream, Split
from ._common import TRAIN_STEP, cache_key, device_of, one_pass, to_cpu

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

    def masked_step(loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for p, m in zip(params, masks):
                p.grad.add_(p, alpha=data.recipe.weight_decay).mul_(m)
        opt.step()

    def forget_step(k: int) -> None:
        fi = f_stream.take(k)
        labels = torch.randint(data.num_classes, (k,), generator=label_gen).to(device)
        masked_step(F.cross_entropy(model(f.x[fi]), labels))

    def retain_step(k: int) -> None:
        ri = r_stream.take(k)
        masked_step(alpha * F.cross_entropy(model(r.x[ri]), r.y[ri]))

    while budget.active:
        if not one_pass(budget, len(f), data.batch_size, TRAIN_STEP, forget_step, model.train):
            break
        if not one_pass(budget, len(r), data.batch_size, TRAIN_STEP, retain_step, model.train):
            break
    return model.eval()
