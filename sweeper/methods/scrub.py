"""SCRUB: a student (the model) moves away from its teacher θ_poisoned on forget and stays close on retain.

Kurmanji, Triantafillou, Hayes, Triantafillou, "Towards Unbounded Machine Unlearning" (NeurIPS 2023,
arXiv 2302.09880). Max-steps on forget maximise KL(teacher ‖ student); min-steps on retain minimise
α·KL + γ·CE, all at temperature T. Follows github.com/meghdadk/SCRUB, large_scale_unlearning.ipynb
(line numbers of the raw .ipynb file): SGD lr 5e-4, momentum 0.9, weight decay 5e-4 (lines 740, 743-744;
here the recipe's momentum and weight decay), msteps 2, T 4, γ 0.99, α 0.001 (lines 727-734), and the
loaders that actually run: forget batch 512, retain batch 256 (lines 678, 684), a forget/retain ratio of 2
(small_scale_unlearning.ipynb lines 352-353: 64 and 32, also 2; its `del_batch_size`/`sgda_batch_size`,
lines 737-738, are never used). The retain batch is the recipe's batch size and the forget batch
`forget_batch_ratio` times it; the ratio is searched, since other notebooks of the repository run 1
(large_scale_ictest.ipynb 638-639), 0.5 (MIA_experiments.ipynb 883-884) and 4 (BadT_experiments.ipynb
1958-1959). Learning rate: `adjust_learning_rate` (thirdparty/repdistiller/helper/util.py line 22),
×0.1 for each of lr_decay_epochs [3, 5, 9] (lines 741-742) that the epoch number exceeds.

Schedule as a function of units spent: a SCRUB epoch is one pass over forget of max-steps followed by
one pass over retain of min-steps; the first `msteps` epochs have the forget pass, later epochs are
retain only (the notebook's `if epoch <= msteps`, epochs from 1; line 834). Passes are charged whole
batches and wait at checkpoints rather than being cut, so epoch e starts after exactly
4·Σ_{i<e}(|retain| + |forget|·[i ≤ msteps]) units and the lr decay, set per epoch, is a function of
units spent. Each example costs 4 units: student forward + backward (3) and one teacher forward (1).

Deliberate deviations: batches are drawn from index streams (a fresh permutation per pass) rather than
from DataLoaders, and momentum and weight decay are the recipe's (5e-4 and 0.9 in the notebook too)."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..data import IndexStream
from ._common import TEACHER_FORWARD, TRAIN_STEP, distill_kl, frozen_copy, one_pass, optimizer, sgd_step

PAPER = "Kurmanji et al., NeurIPS 2023, arXiv 2302.09880"
PER_ITEM = TRAIN_STEP + TEACHER_FORWARD
LR_DECAY_EPOCHS = (3, 5, 9)  # large_scale_unlearning.ipynb line 741
LR_DECAY_RATE = 0.1  # line 742


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


def epoch_lr(lr: float, epoch: int) -> float:
    """The notebook's learning rate in SCRUB epoch `epoch` (from 1): ×0.1 per decay epoch it exceeds."""
    return lr * LR_DECAY_RATE ** sum(epoch > d for d in LR_DECAY_EPOCHS)


def unlearn(model, data, budget, *, lr=5.0e-4, msteps=2, T=4.0, gamma=0.99, alpha=0.001,
            forget_batch_ratio=2.0):
    r, f = data.retain, data.forget
    teacher = frozen_copy(model)
    opt = optimizer(model, data, lr)
    r_stream, f_stream = IndexStream(len(r), data.gen(0)), IndexStream(len(f), data.gen(1))
    f_batch = max(1, round(data.batch_size * forget_batch_ratio))

    def forget_step(k: int) -> None:
        max_step(model, teacher, opt, f.x[f_stream.take(k)], T)

    def retain_step(k: int) -> None:
        idx = r_stream.take(k)
        min_step(model, teacher, opt, r.x[idx], r.y[idx], T, alpha, gamma)

    epoch = 0
    while budget.active:
        epoch += 1
        for group in opt.param_groups:
            group["lr"] = epoch_lr(lr, epoch)
        if epoch <= msteps and not one_pass(budget, len(f), f_batch, PER_ITEM, forget_step, model.train):
            break
        if not one_pass(budget, len(r), data.batch_size, PER_ITEM, retain_step, model.train):
            break
    return model.eval()
