"""Bad teacher: distil θ_poisoned on retain and a randomly initialised ("incompetent") teacher on forget.

Chundawat, Tarun, Mandal, Kankanhalli, "Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks
using an Incompetent Teacher" (AAAI 2023, arXiv 2205.08096). Follows github.com/vikram2000b/
bad-teaching-unlearning (notebook = CIFARSuper20_Rocket_Unlearn.ipynb, raw .ipynb line numbers): the
student minimises KL(teacher ‖ student) at temperature T, the teacher being the random one for forget
points and θ_poisoned for retain points, KL averaged over batch and classes (unlearn.py lines 9-19,
`UnlearnerLoss`), with Adam on shuffled batches of the unlearning set = forget plus a random
`retain_subset` fraction of retain (notebook line 148: 0.3; dataset.py lines 64-83, `UnLearningData`).
So the forget share of a batch is derived from the data, |f| / (|f| + retain_subset·|r|): 0.45 on
digits at 20% poison, 0.048 at the paper's 1.5% on CIFAR-10. Defaults: Adam lr 1e-4, T 1, one epoch
(notebook lines 314-320), retain_subset 0.3 (line 148). Each example costs 4 units: student forward +
backward (3) and the forward of the one teacher it needs (1).

`retain_subset` is the searched knob in place of a forget share: a share derived from the data cannot
be a signature default (the first point a sweep tries must be a number in the space), while the
reference's own fraction can, and searching it searches the share.

Deliberate deviations: each batch holds exactly round(share·batch) forget points (the reference's
shuffled union gives that many on average); the batch is the recipe's batch size, as the reference's 256
(notebook line 320) is its own training batch size (notebook line 37); batches stream over retain instead
of a fixed 30% subset, so a longer budget sees more of retain at the same share."""
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


def forget_share(n_forget: int, n_retain: int, retain_subset: float) -> float:
    """The forget fraction of the reference's unlearning set: forget plus `retain_subset` of retain."""
    return n_forget / (n_forget + retain_subset * n_retain)


def unlearn(model, data, budget, *, lr=1.0e-4, T=1.0, retain_subset=0.3):
    r, f = data.retain, data.forget
    good, bad = frozen_copy(model), random_teacher(model, data.gen(TEACHER_STREAM))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    r_stream, f_stream = IndexStream(len(r), data.gen(0)), IndexStream(len(f), data.gen(1))
    share = forget_share(len(f), len(r), retain_subset)
    n_forget = min(data.batch_size, max(1, round(share * data.batch_size)))

    def step(k: int) -> None:
        fi, ri = f_stream.take(n_forget), r_stream.take(k - n_forget)
        with torch.no_grad():
            target = torch.cat([bad(f.x[fi]), good(r.x[ri])])
        sgd_step(opt, unlearner_loss(model(torch.cat([f.x[fi], r.x[ri]])), target, T))

    train_steps(budget, data.batch_size, PER_ITEM, step, model.train)
    return model.eval()
