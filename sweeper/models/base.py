"""A model is a normalisation followed by an ordered list of blocks, input -> output.

`blocks` makes "the last k blocks" mean one thing for every method (EU-k, CF-k) and every model."""
from __future__ import annotations

import torch
from torch import nn


class BlockModel(nn.Module):
    def __init__(self, blocks: list[nn.Module], mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        # Normalisation lives inside the model so inputs, gradients and perturbations share [0, 1] units.
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        for block in self.blocks:
            x = block(x)
        return x
