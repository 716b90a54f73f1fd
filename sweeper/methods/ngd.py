"""Noisy gradient descent: GD on retain, then θ ← θ + σ·N(0, I) after every step.

Pawelczyk et al., ICLR 2025, arXiv 2406.17216 (Langevin-style unlearning, after Chien et al. 2024).
Default σ = 3.16e-4 is the paper's σ² = 1e-7 on ResNet-18 / CIFAR-10; lr as GD (0.01). With σ = 0 it
is GD exactly (a test checks bit equality)."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ._common import TRAIN_STEP, optimizer, step_loop

PAPER = "Pawelczyk et al., ICLR 2025, arXiv 2406.17216"


def unlearn(model, data, budget, *, lr=0.01, sigma=3.16e-4):
    r = data.retain
    noise_gen = data.gen(1)  # its own stream: the batch order is GD's whatever σ is

    @torch.no_grad()
    def add_noise():
        if sigma > 0:
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=noise_gen).to(p.device), alpha=sigma)

    return step_loop(model, budget, optimizer(model, data, lr), len(r), data.gen(0), data.batch_size,
                     TRAIN_STEP, lambda idx: F.cross_entropy(model(r.x[idx]), r.y[idx]), add_noise)
