"""NegGrad+: minimise β·L_retain − (1−β)·L_forget on paired retain / forget batches.

Kurmanji, Triantafillou, Hayes, Triantafillou, "Towards Unbounded Machine Unlearning" (SCRUB paper),
NeurIPS 2023, arXiv 2302.09880; defaults β = 0.999, lr 0.01 from its repository's NegGrad+ runs.
`grad_diff` of LLM benchmarks is this method under other parameter names."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ._common import TRAIN_STEP, optimizer, step_loop

PAPER = "Kurmanji et al., NeurIPS 2023, arXiv 2302.09880"


def unlearn(model, data, budget, *, lr=0.01, beta=0.999):
    r, f = data.retain, data.forget
    forget_gen = data.gen(1)

    def loss(idx: torch.Tensor) -> torch.Tensor:
        # Pair each retain example with a forget example drawn from its own stream (forget is smaller).
        fidx = torch.randint(len(f), (len(idx),), generator=forget_gen)
        return (beta * F.cross_entropy(model(r.x[idx]), r.y[idx])
                - (1 - beta) * F.cross_entropy(model(f.x[fidx]), f.y[fidx]))

    return step_loop(model, budget, optimizer(model, data, lr), len(r), data.gen(0), data.batch_size,
                     2 * TRAIN_STEP, loss)
