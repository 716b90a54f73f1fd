"""CIFAR-10 (Krizhevsky 2009: 50,000 train + 10,000 test 32x32 colour images, 10 classes) from a local
folder, read by torchvision's own `CIFAR10` class; nothing is downloaded unless `download` is true.

Fixed splits (see _cifar.py): test = the official test set; 5,000 validation images carved from the
official train set (the 45k/5k split of He et al. 2016, §4.2); `n_train` subsamples the rest for quick
runs. `skip_checksums` skips torchvision's md5 checks, for files written by tests or tools."""
from __future__ import annotations

import functools

from ..data import DataSet
from ..params import Range
from ..registry import datasets
from . import _cifar

# Per-channel mean/std of the 50,000 official training images (the figures most CIFAR code uses), fixed
# so a model's normalisation never depends on the subsample it was trained on.
SOURCE = _cifar.Source("cifar10", "CIFAR10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
# Stratified splits need one image per class; the upper bound depends on the folder (checked on load).
RANGES = {"n_val": Range(SOURCE.num_classes)}


@datasets.register("cifar10")
def load(*, root: str | None = None, n_val: int = 5000, n_train: int | None = None, download: bool = False,
         skip_checksums: bool = False) -> DataSet:
    return _cifar.load(SOURCE, root=root, n_val=n_val, n_train=n_train, download=download,
                       skip_checksums=skip_checksums)


# Run by config.py when an experiment file is read, with every parameter of `load`: a wrong folder is
# one line before anything runs.
check = functools.partial(_cifar.check, SOURCE)
