"""Gradient descent (fine-tuning) on the retain set.

Named GD in Pawelczyk et al. (ICLR 2025, arXiv 2406.17216); "FT" in Jia et al., "Model Sparsity Can
Simplify Machine Unlearning" (NeurIPS 2023, arXiv 2304.04934). Default lr 0.01 from the latter's
README (FT: lr 0.01 for 10 epochs). Optimiser momentum / weight decay / batch size: the scenario recipe."""
from __future__ import annotations

from torch.nn import functional as F

from ._common import TRAIN_STEP, optimizer, step_loop

PAPER = "Pawelczyk et al., ICLR 2025, arXiv 2406.17216 (GD); Jia et al., NeurIPS 2023, arXiv 2304.04934 (FT)"


def unlearn(model, data, budget, *, lr=0.01):
    r = data.retain
    return step_loop(model, budget, optimizer(model, data, lr), len(r), data.gen(0), data.batch_size,
                     TRAIN_STEP, lambda idx: F.cross_entropy(model(r.x[idx]), r.y[idx]))
