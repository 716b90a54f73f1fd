"""Data sets, registered by name: a loader `load(**params) -> DataSet` with fixed splits.

A loader that reads files may have its module define `check(**params)` (called with every keyword
parameter of the loader): a cheap look at the files, run when an experiment file is read."""
from . import cifar10, cifar100, digits, digits_up, imdb  # noqa: F401  (registers)
