"""scikit-learn's 8x8 digits (1,797 images, ships with scikit-learn: no network needed).

Fixed splits (split seed 0, stratified): 300 test, 300 validation, the remaining 1,197 train."""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

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
    arrays = _cached_splits(n_val, n_test)
    train = _split(arrays["x_train"], arrays["y_train"])
    mean, std = float(train.x.mean()), float(train.x.std())
    return DataSet("digits", train, _split(arrays["x_val"], arrays["y_val"]), _split(arrays["x_test"], arrays["y_test"]),
                   10, (mean,), (std,))


def cache_file(n_val: int, n_test: int) -> Path:
    """Where this machine keeps the splits: keyed by the sizes, the split seed and scikit-learn's release
    (its data file and its stratified split make them), found without importing scikit-learn."""
    from importlib.metadata import version

    folder = Path(os.environ.get("SWEEPER_DATA_CACHE") or Path.home() / ".cache" / "sweeper" / "datasets")
    return folder / f"digits-v{version('scikit-learn')}-s{SPLIT_SEED}-val{n_val}-test{n_test}.npz"


def _cached_splits(n_val: int, n_test: int) -> dict[str, np.ndarray]:
    """The splits as `splits` computes them, computed once per machine: importing scikit-learn costs each
    new process (every Ray worker of every sweep) about 1.5 s, reading the 0.5 MB file milliseconds. The
    file is written atomically; one that does not read back whole is computed again."""
    path = cache_file(n_val, n_test)
    try:
        with np.load(path) as f:
            return {k: f[k] for k in _KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass
    arrays = splits(n_val, n_test)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: every process computes them, as before the cache
    return arrays


_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def splits(n_val: int, n_test: int) -> dict[str, np.ndarray]:
    """scikit-learn's digits in [0, 1] pixel units, split (stratified, SPLIT_SEED) into train, val, test."""
    from sklearn.datasets import load_digits  # ~1.5 s per process: _cached_splits spares it
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    x = (raw.images / 16.0).astype(np.float32)  # [0, 16] ints -> [0, 1] pixel units
    y = raw.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=n_test, stratify=y, random_state=SPLIT_SEED)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=n_val, stratify=y_rest, random_state=SPLIT_SEED)
    return dict(zip(_KEYS, (x_train, y_train, x_val, y_val, x_test, y_test)))
