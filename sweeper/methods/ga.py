"""Gradient ascent on the forget set (maximise its loss).

Thudi et al., "Unrolling SGD", EuroS&P 2022 (arXiv 2109.13398); as benchmarked in Jia et al., NeurIPS
2023 (arXiv 2304.04934), whose README uses lr 1e-4 for 5 epochs: our default. Very lr-sensitive."""
from __future__ import annotations

from torch.nn import functional as F

from ._common import TRAIN_STEP, optimizer, step_loop

PAPER = "Thudi et al., EuroS&P 2022, arXiv 2109.13398; defaults from Jia et al., NeurIPS 2023, arXiv 2304.04934"


def unlearn(model, data, budget, *, lr=1.0e-4):
    f = data.forget
    return step_loop(model, budget, optimizer(model, data, lr), len(f), data.gen(0), data.batch_size,
                     TRAIN_STEP, lambda idx: -F.cross_entropy(model(f.x[idx]), f.y[idx]))
