"""scikit-learn's digits upsampled by bilinear interpolation (default 8x8 -> 32x32, CIFAR's size).

Same images and fixed splits as `digits`; the larger grid gives perturbation attacks (Witches' Brew,
Gradient Canceling) and convolutions more pixels to work with at a cost that stays CPU-friendly."""
from __future__ import annotations

from torch.nn import functional as F

from ..data import DataSet, Split
from ..params import Range
from ..registry import datasets
from .digits import RANGES as DIGITS_RANGES
from .digits import load as load_digits

# Upsampling only (8 is the native grid); 128 keeps the 1,797 images under ~120 MB of float32.
RANGES = {"size": Range(8, 128), **DIGITS_RANGES}


def _up(split: Split, size: int) -> Split:
    x = F.interpolate(split.x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return Split(x.contiguous(), split.y)


@datasets.register("digits_up")
def load(*, size: int = 32, n_val: int = 300, n_test: int = 300) -> DataSet:
    d = load_digits(n_val=n_val, n_test=n_test)
    train = _up(d.train, size)
    mean, std = float(train.x.mean()), float(train.x.std())
    return DataSet(f"digits_up{size}", train, _up(d.val, size), _up(d.test, size), d.num_classes, (mean,), (std,))
