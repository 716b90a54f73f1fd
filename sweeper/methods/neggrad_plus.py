"""NegGrad+: minimise β·(L_retain + pull) − (1−β)·L_forget on paired retain / forget batches.

Kurmanji, Triantafillou, Hayes, Triantafillou, "Towards Unbounded Machine Unlearning" (SCRUB paper),
NeurIPS 2023, arXiv 2302.09880. Follows its repository's NegGrad+ as run in
github.com/meghdadk/SCRUB, small_scale_unlearning.ipynb (raw .ipynb line numbers): `run_neggrad_epoch`
(lines 1114-1139) keeps the model in eval mode (BatchNorm statistics and dropout frozen), pairs each
retain batch with the next batch of a cycled forget loader and minimises
α·(CE_r + wd/2·‖θ − θ_start‖²) − (1−α)·CE_f, the L2 pull `l2_penalty` (lines 1071-1077) at the training
run's weight decay (here the recipe's); `negative_grad` (lines 1157-1163) uses plain SGD
(no momentum, weight_decay 0). Defaults: α (here β) 0.95, lr 0.01 (lines 1411-1415); the retain
batch is the training batch size (line 1394: 128) and the forget batch half of it (forget_bs 64,
lines 353, 376). `grad_diff` of LLM benchmarks is this method under other parameter names.

Each example costs 3 units (forward + backward), retain and forget alike.

Deliberate deviations: batches come from index streams (forget reshuffled every pass; the notebook's
`itertools.cycle` replays its first forget order), and the pull's coefficient is the recipe's weight
decay, as the notebook's is its own training weight decay (0.1 there)."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..data import IndexStream
from ._common import TRAIN_STEP, sgd_step, train_steps

PAPER = "Kurmanji et al., NeurIPS 2023, arXiv 2302.09880"
FORGET_BATCH_RATIO = 0.5  # forget batch / retain batch: 64 / 128 in the notebook


def l2_pull(model, start: list[torch.Tensor], weight: float) -> torch.Tensor:
    """weight/2 · ‖θ − θ_start‖² (the notebook's `l2_penalty`)."""
    return weight / 2 * sum((p - p0).pow(2).sum() for p, p0 in zip(model.parameters(), start))


def unlearn(model, data, budget, *, lr=0.01, beta=0.95):
    r, f = data.retain, data.forget
    start = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=lr)  # plain SGD, as the notebook's `negative_grad`
    r_batch = data.batch_size
    f_batch = max(1, round(FORGET_BATCH_RATIO * r_batch))
    r_stream, f_stream = IndexStream(len(r), data.gen(0)), IndexStream(len(f), data.gen(1))

    def step(k: int) -> None:  # k = r_batch + f_batch: the budget grants whole pairs or nothing
        ri, fi = r_stream.take(r_batch), f_stream.take(f_batch)
        retain = F.cross_entropy(model(r.x[ri]), r.y[ri]) + l2_pull(model, start, data.recipe.weight_decay)
        sgd_step(opt, beta * retain - (1 - beta) * F.cross_entropy(model(f.x[fi]), f.y[fi]))

    train_steps(budget, r_batch + f_batch, TRAIN_STEP, step, model.eval)  # eval mode: BatchNorm frozen
    return model.eval()
