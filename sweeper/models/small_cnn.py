"""A small CNN for 8x8 / 28x28 / 32x32 inputs: two conv blocks with BatchNorm, then two linear blocks.

BatchNorm is there on purpose: EU-k, CF-k and SSD must handle buffers, as on ResNets."""
from __future__ import annotations

from torch import nn

from ..data import DataSet
from ..params import POSITIVE
from ..registry import models
from .base import BlockModel

RANGES = {"width": POSITIVE, "hidden": POSITIVE}  # channels and units: at least one each


@models.register("small_cnn")
def build(data: DataSet, *, width: int = 32, hidden: int = 128) -> BlockModel:
    channels, height, wide = data.input_shape
    blocks = [
        nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()),
        nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
                      nn.MaxPool2d(2)),
        nn.Sequential(nn.Flatten(), nn.Linear(2 * width * (height // 2) * (wide // 2), hidden), nn.ReLU()),
        nn.Linear(hidden, data.num_classes),
    ]
    return BlockModel(blocks, data.mean, data.std)
