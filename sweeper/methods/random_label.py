"""Random labels: fine-tune on S_corr with every forget point relabelled to another class.

Golatkar, Achille, Soatto, CVPR 2020 (arXiv 1911.04933) as a baseline; the form here is the SalUn
codebase's (Fan et al., ICLR 2024, arXiv 2310.12508: forget with random labels trained together with
retain), with each forget label drawn uniformly from the other classes afresh every time the point
comes up, i.e. every epoch of the shuffled S_corr. Default lr 0.01 (SalUn's RL baseline, 10 epochs).
Momentum, weight decay, batch size: the scenario recipe."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..data import IndexStream
from ._common import TRAIN_STEP, optimizer, other_labels, sgd_step, train_steps

PAPER = "Golatkar et al., CVPR 2020, arXiv 1911.04933; form of Fan et al., ICLR 2024, arXiv 2310.12508"


def labelled_batch(data, idx: torch.Tensor, gen: torch.Generator):
    """Items `idx` of S_corr = forget ∪ retain (indices below |forget| are forget points), forget items
    first: (inputs, training labels, true labels, is-forget mask), every forget point's training label a
    random other class drawn now."""
    f, r = data.forget, data.retain
    fi, ri = idx[idx < len(f)], idx[idx >= len(f)] - len(f)
    y_true = torch.cat([f.y[fi], r.y[ri]])
    y = torch.cat([other_labels(f.y[fi], data.num_classes, gen), r.y[ri]])
    is_forget = torch.arange(len(idx)) < len(fi)
    return torch.cat([f.x[fi], r.x[ri]]), y, y_true, is_forget


def unlearn(model, data, budget, *, lr=0.01):
    opt = optimizer(model, data, lr)
    stream = IndexStream(len(data.forget) + len(data.retain), data.gen(0))
    label_gen = data.gen(1)

    def step(k: int) -> None:
        x, y, _, _ = labelled_batch(data, stream.take(k), label_gen)
        sgd_step(opt, F.cross_entropy(model(x), y))

    train_steps(budget, data.batch_size, TRAIN_STEP, step, model.train)
    return model.eval()
