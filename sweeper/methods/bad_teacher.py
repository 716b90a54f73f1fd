"""Bad teacher: distil θ_poisoned on retain and a randomly initialised ("incompetent") teacher on forget.

Chundawat, Tarun, Mandal, Kankanhalli, "Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks
using an Incompetent Teacher" (AAAI 2023, arXiv 2205.08096). Each batch mixes `forget_ratio` forget
points with retain points; the student minimises KL(teacher ‖ student) at temperature T, the teacher
being the random one for forget points and θ_poisoned for retain points, KL averaged over batch and
classes, as their `UnlearnerLoss`. Defaults from their code (as in the SSD repository's "blindspot"):
Adam lr 1e-4, T = 1; forget_ratio 0.27 = the forget share of their unlearning set (forget plus 30% of
retain: 5,000 / (5,000 + 0.3·45,000) on CIFAR-10). Each example costs 4 units: student forward +
backward (3) and the forward of the one teacher it needs (1)."""
from __future__ import annotations

import copy

import torch
from torch.nn import functional as F

from ..data import IndexStream
from ._common import TEACHER_FORWARD, TRAIN_STEP, frozen_copy, reinitialise, sgd_step, train_steps

PAPER = "Chundawat et al., AAAI 2023, arXiv 2205.08096"
PER_ITEM = TRAIN_STEP + TEACHER_FORWARD
TEACHER_STREAM = 2  # data.gen stream of the random teacher's initialisation


def random_teacher(model, gen: torch.Generator):
    """A copy of the model re-initialised from `gen` (global RNG untouched), frozen, in eval mode."""
    teacher = copy.deepcopy(model)
    reinitialise(teacher, gen)
    return frozen_copy(teacher)


def unlearner_loss(student_logits, teacher_logits, T) -> torch.Tensor:
    """KL(teacher ‖ student) at temperature T, mean over batch and classes (their `F.kl_div` default)."""
    log_s = F.log_softmax(student_logits / T, dim=1)
    return F.kl_div(log_s, F.softmax(teacher_logits / T, dim=1), reduction="sum") / log_s.numel()


def unlearn(model, data, budget, *, lr=1.0e-4, T=1.0, forget_ratio=0.27):
    r, f = data.retain, data.forget
    good, bad = frozen_copy(model), random_teacher(model, data.gen(TEACHER_STREAM))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    r_stream, f_stream = IndexStream(len(r), data.gen(0)), IndexStream(len(f), data.gen(1))
    n_forget = min(data.batch_size, max(1, round(forget_ratio * data.batch_size)))

    def step(k: int) -> None:
        fi, ri = f_stream.take(n_forget), r_stream.take(k - n_forget)
        with torch.no_grad():
            target = torch.cat([bad(f.x[fi]), good(r.x[ri])])
        sgd_step(opt, unlearner_loss(model(torch.cat([f.x[fi], r.x[ri]])), target, T))

    train_steps(budget, data.batch_size, PER_ITEM, step, model.train)
    return model.eval()
