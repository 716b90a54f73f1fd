"""scikit-learn's 8x8 digits (1,797 images, ships with scikit-learn: no network needed).

Fixed splits (split seed 0, stratified): 300 test, 300 validation, the remaining 1,197 train."""
from __future__ import annotations

import numpy as np
import torch

from ..data import DataSet, Split
from ..params import Range
from ..registry import datasets

SPLIT_SEED = 0  # fixed for ever: changing it changes every cached base model's meaning
# Stratified splits need one image per class (10) at least; at most 800 each keeps ≥ 197 of the 1,797
# images for training whatever the other split's size.
RANGES = {"n_val": Range(10, 800), "n_test": Range(10, 800)}


def _split(x: np.ndarray, y: np.ndarray) -> Split:
    return Split(torch.from_numpy(x).float().unsqueeze(1), torch.from_numpy(y).long())


@datasets.register("digits")
def load(*, n_val: int = 300, n_test: int = 300) -> DataSet:
    from sklearn.datasets import load_digits  # imported here: ~1 s that commands not loading data skip
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    x = (raw.images / 16.0).astype(np.float32)  # [0, 16] ints -> [0, 1] pixel units
    y = raw.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=n_test, stratify=y, random_state=SPLIT_SEED)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=n_val, stratify=y_rest, random_state=SPLIT_SEED)
    train = _split(x_train, y_train)
    mean, std = float(train.x.mean()), float(train.x.std())
    return DataSet("digits", train, _split(x_val, y_val), _split(x_test, y_test), 10, (mean,), (std,))
