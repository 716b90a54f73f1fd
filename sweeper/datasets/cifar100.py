"""CIFAR-100 (Krizhevsky 2009: 50,000 train + 10,000 test 32x32 colour images, 100 fine classes) from a
local folder, read by torchvision's own `CIFAR100` class (`fine_labels`); nothing is downloaded unless
`download` is true. Splits and `skip_checksums` as for cifar10 (see _cifar.py)."""
from __future__ import annotations

import functools

from ..data import DataSet
from ..params import Range
from ..registry import datasets
from . import _cifar

# Per-channel mean/std of the 50,000 official training images (the figures most CIFAR code uses).
SOURCE = _cifar.Source("cifar100", "CIFAR100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
RANGES = {"n_val": Range(SOURCE.num_classes)}  # one image per class at least, as cifar10


@datasets.register("cifar100")
def load(*, root: str | None = None, n_val: int = 5000, n_train: int | None = None, download: bool = False,
         skip_checksums: bool = False) -> DataSet:
    return _cifar.load(SOURCE, root=root, n_val=n_val, n_train=n_train, download=download,
                       skip_checksums=skip_checksums)


# Run by config.py when an experiment file is read, with every parameter of `load`: a wrong folder is
# one line before anything runs.
check = functools.partial(_cifar.check, SOURCE)
