"""Multinomial logistic regression on pixels: flatten, then one linear layer (no hidden units).

The convex victim of model-targeted poisoning: Lu, Kamath, Yu (ICML 2023, arXiv 2302.03137) attack
it on MNIST (their `LR`, watml/plim GradPC/models.py:31-39: one `nn.Linear(784, 10)`), and on such a
model the stationarity of the training loss decides where training ends. One block, the linear head:
EU-1 re-initialises the whole model (retraining), CF-1 fine-tunes all of it (GD); k ≥ 2 does not exist.
Normalisation stays inside the model as for every BlockModel, so inputs keep [0, 1] pixel units."""
from __future__ import annotations

import math

from torch import nn

from ..data import DataSet
from ..registry import models
from .base import BlockModel


@models.register("linear")
def build(data: DataSet) -> BlockModel:
    features = math.prod(data.input_shape)
    return BlockModel([nn.Sequential(nn.Flatten(), nn.Linear(features, data.num_classes))], data.mean, data.std)
