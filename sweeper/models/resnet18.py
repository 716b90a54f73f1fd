"""ResNet-18 for 32x32 inputs (He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
arXiv 1512.03385; the CIFAR variant of the unlearning literature, e.g. kuangliu/pytorch-cifar): a 3x3 stem
convolution without max-pool, four stages of two BasicBlocks (width x 1, 2, 4, 8 channels, stride 2 from
the second stage on), global average pooling and a linear head.

Blocks: stem, the four stages, head (6), so "the last k blocks" of EU-k/CF-k are whole stages, as on the
small CNN. PyTorch's default initialisation throughout (as kuangliu's code), which is also what EU-k's
re-initialisation draws from (`reset_parameters`). Normalisation lives in BlockModel, so inputs stay in
[0, 1] pixel units."""
from __future__ import annotations

from torch import nn
from torch.nn import functional as F

from ..data import DataSet
from ..params import POSITIVE
from ..registry import models
from .base import BlockModel

RANGES = {"width": POSITIVE}  # base channels (64 in the paper); tests use a handful


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and an identity (or 1x1-projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def _stage(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))


@models.register("resnet18")
def build(data: DataSet, *, width: int = 64) -> BlockModel:
    channels = data.input_shape[0]
    w = [width, 2 * width, 4 * width, 8 * width]
    blocks = [
        nn.Sequential(nn.Conv2d(channels, w[0], 3, 1, 1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU()),
        _stage(w[0], w[0], 1), _stage(w[0], w[1], 2), _stage(w[1], w[2], 2), _stage(w[2], w[3], 2),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w[3], data.num_classes)),
    ]
    return BlockModel(blocks, data.mean, data.std)
