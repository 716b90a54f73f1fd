"""SCRUB: a student (the model) moves away from its teacher θ_poisoned on forget and stays close on retain.

Kurmanji, Triantafillou, Hayes, Triantafillou, "Towards Unbounded Machine Unlearning" (NeurIPS 2023,
arXiv 2302.09880). Max-steps on forget maximise KL(teacher ‖ student); min-steps on retain minimise
α·KL + γ·CE, all at temperature T. Defaults from the authors' notebook: lr 5e-4 (SGD, momentum 0.9,
weight decay 5e-4: here the scenario recipe's), msteps 2, T 4, γ 0.99, α 0.001; forget batches are a
quarter of retain batches (notebook: 32 and 128). Its lr decay (×0.1 after epochs 3, 5, 9) is not used.

Schedule as a function of units spent: a SCRUB epoch is one pass over forget of max-steps followed by
one pass over retain of min-steps; the first `msteps` epochs have the forget pass, later epochs are
retain only (the notebook's `if epoch <= msteps`, epochs from 1). Each example costs 4 units: student
forward + backward (3) and one teacher forward (1)."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..data import IndexStream
from ._common import TEACHER_FORWARD, TRAIN_STEP, distill_kl, frozen_copy, one_pass, optimizer, sgd_step

PAPER = "Kurmanji et al., NeurIPS 2023, arXiv 2302.09880"
PER_ITEM = TRAIN_STEP + TEACHER_FORWARD
FORGET_BATCH_FRACTION = 32 / 128  # notebook: del_batch_size 32, sgda_batch_size 128


def max_step(student, teacher, opt, x, T) -> None:
    """One step up KL(teacher ‖ student) on a forget batch."""
    with torch.no_grad():
        t = teacher(x)
    sgd_step(opt, -distill_kl(student(x), t, T))


def min_step(student, teacher, opt, x, y, T, alpha, gamma) -> None:
    """One step down α·KL(teacher ‖ student) + γ·CE on a retain batch."""
    with torch.no_grad():
        t = teacher(x)
    out = student(x)
    sgd_step(opt, alpha * distill_kl(out, t, T) + gamma * F.cross_entropy(out, y))


def unlearn(model, data, budget, *, lr=5.0e-4, msteps=2, T=4.0, gamma=0.99, alpha=0.001):
    r, f = data.retain, data.forget
    teacher = frozen_copy(model)
    opt = optimizer(model, data, lr)
    r_stream, f_stream = IndexStream(len(r), data.gen(0)), IndexStream(len(f), data.gen(1))
    f_batch = max(1, round(data.batch_size * FORGET_BATCH_FRACTION))

    def forget_step(k: int) -> None:
        max_step(model, teacher, opt, f.x[f_stream.take(k)], T)

    def retain_step(k: int) -> None:
        idx = r_stream.take(k)
        min_step(model, teacher, opt, r.x[idx], r.y[idx], T, alpha, gamma)

    epoch = 0
    while budget.active:
        epoch += 1
        if epoch <= msteps and not one_pass(budget, len(f), f_batch, PER_ITEM, forget_step, model.train):
            break
        if not one_pass(budget, len(r), data.batch_size, PER_ITEM, retain_step, model.train):
            break
    return model.eval()
