"""What CIFAR-10 and CIFAR-100 share: reading a local folder through torchvision's own classes, and the
fixed splits.

Splits: test = the official test set; validation = `n_val` images carved from the official train set
(stratified, split seed 0, as digits); train = the rest, or a stratified subsample of `n_train` of it (same
seed) for quick runs. Images are float32 in [0, 1], NCHW, like every data set here: attacks add their
float residuals to `Split.x` in place, so keeping the clean images as uint8 would need a separate residual
in `Split` and in every attack (allowed, but not done: 45,000 images are ~550 MB of float32).

torchvision checks md5 sums in two places (`_check_integrity` for the batch files, `_load_meta` for the
meta file); files written by tests or tools cannot match them. `skip_checksums` swaps in a subclass whose
file lists carry no md5, so torchvision's own `check_integrity` asks only that each file exists: those two
checks, and nothing else, are skipped; torchvision itself is left untouched."""
from __future__ import annotations

import functools
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import DataSet, Split
from ..errors import SweeperError

SPLIT_SEED = 0  # fixed for ever: changing it changes every cached base model's meaning


@dataclass(frozen=True)
class Source:
    name: str            # registered name, e.g. "cifar10"
    class_name: str      # torchvision's class (CIFAR10 / CIFAR100)
    num_classes: int
    mean: tuple[float, ...]  # per-channel statistics of the official train set, normalised inside the model
    std: tuple[float, ...]

    @property
    def cls(self) -> type:
        """Imported on first use: torchvision.datasets costs ~1.5 s to import, which every `sweeper`
        command (and every Ray worker) would otherwise pay for a data set it may never read."""
        import torchvision.datasets

        return getattr(torchvision.datasets, self.class_name)

    @property
    def files(self) -> list[str]:
        return [f for f, _ in self.cls.train_list + self.cls.test_list] + [self.cls.meta["filename"]]

    def layout(self) -> str:
        return f"{self.cls.base_folder}/ holding {', '.join(self.files)}"


@functools.cache
def unchecked(cls: type) -> type:
    """`cls` without md5 sums: torchvision's `check_integrity(path, None)` is then `os.path.isfile(path)`."""
    return type(f"Unchecked{cls.__name__}", (cls,), {
        "train_list": [[f, None] for f, _ in cls.train_list],
        "test_list": [[f, None] for f, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    })


def _root(src: Source, root) -> Path:
    if not isinstance(root, (str, os.PathLike)) or not str(root):
        raise SweeperError(f"dataset {src.name} needs root: the folder holding {src.cls.base_folder}/ "
                           "(data_root: in the experiment file, or --data-root DIR)")
    return Path(root).expanduser()


def _check_folder(src: Source, root: Path) -> None:
    """The folder and every file torchvision will open exist; otherwise one line naming what is missing."""
    if not root.is_dir():
        raise SweeperError(f"dataset {src.name}: data folder {root} does not exist (expected {root}/{src.layout()})")
    missing = [f for f in src.files if not (root / src.cls.base_folder / f).is_file()]
    if missing:
        raise SweeperError(f"dataset {src.name}: {root} lacks the CIFAR files {', '.join(missing)} "
                           f"(expected {root}/{src.layout()})")


def _open(src: Source, root: Path, train: bool, download: bool, skip_checksums: bool):
    """torchvision's dataset object (its `.data` is uint8 N x 32 x 32 x 3, `.targets` a list of ints)."""
    if download:
        return _download(src, root, train, skip_checksums)
    _check_folder(src, root)
    cls = unchecked(src.cls) if skip_checksums else src.cls
    try:
        return cls(str(root), train=train)
    except RuntimeError:  # "... not found or corrupted": every file exists (checked above), so an md5 sum failed
        raise SweeperError(f"dataset {src.name}: the files in {root / src.cls.base_folder} do not match the official "
                           "md5 sums torchvision checks; for CIFAR-format files you wrote yourself (tests, tools) set "
                           "skip_checksums: true or pass --skip-checksums") from None
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, OSError) as e:
        raise SweeperError(f"dataset {src.name}: cannot read {root / src.cls.base_folder} as CIFAR pickles "
                           f"({type(e).__name__}: {e})") from None


def _download(src: Source, root: Path, train: bool, skip_checksums: bool):
    """torchvision's download (it verifies the tarball's md5 whatever `skip_checksums` says), then the usual open."""
    cls = unchecked(src.cls) if skip_checksums else src.cls
    try:
        cls(str(root), train=train, download=True)
    except Exception as e:  # noqa: BLE001 - network, disk and checksum failures all end the same way
        raise SweeperError(f"dataset {src.name}: downloading {src.cls.url} into {root} failed "
                           f"({type(e).__name__}: {e})") from None
    return _open(src, root, train, False, skip_checksums)


def _plan(src: Source, n_total: int, n_val: int, n_train: int | None, where: Path) -> None:
    """Split sizes that the folder can hold; n_train is optional, so no declared range covers it."""
    if n_val > n_total - src.num_classes:
        raise SweeperError(f"dataset {src.name}: n_val={n_val} leaves fewer than {src.num_classes} of the "
                           f"{n_total} training images in {where} for training")
    if n_train is None:
        return
    rest = n_total - n_val
    if isinstance(n_train, bool) or not isinstance(n_train, int) or not src.num_classes <= n_train <= rest:
        raise SweeperError(f"dataset {src.name}: n_train must be an integer in [{src.num_classes}, {rest}] "
                           f"({n_total} training images in {where} less n_val={n_val}), got {n_train!r}")


def _indices(y: np.ndarray, n_val: int, n_train: int | None) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split  # ~1 s to import (scipy.stats): only when loading

    idx = np.arange(len(y))
    train, val = train_test_split(idx, test_size=n_val, stratify=y, random_state=SPLIT_SEED)
    if n_train is not None and n_train < len(train):
        train, _ = train_test_split(train, train_size=n_train, stratify=y[train], random_state=SPLIT_SEED)
    return np.sort(train), np.sort(val)  # folder order, not shuffle order: training draws its own order


def _split(images: np.ndarray, labels: np.ndarray) -> Split:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # NHWC uint8 -> NCHW
    return Split(x.float().div_(255).contiguous(), torch.from_numpy(np.asarray(labels, dtype=np.int64)))


def check(src: Source, *, root, n_val: int, n_train: int | None, download: bool, skip_checksums: bool) -> None:
    """Run when an experiment file is read: the folder, the files, torchvision's checks and the split
    sizes, so a wrong folder is one line before anything runs. With `download`, fetch once here (so
    several workers never download into one folder at the same time)."""
    path = _root(src, root)
    train = _open(src, path, True, download, skip_checksums)
    _plan(src, len(train.targets), n_val, n_train, path / src.cls.base_folder)


def load(src: Source, *, root, n_val: int, n_train: int | None, download: bool, skip_checksums: bool) -> DataSet:
    path = _root(src, root)
    train_set = _open(src, path, True, download, skip_checksums)
    test_set = _open(src, path, False, False, skip_checksums)
    y = np.asarray(train_set.targets, dtype=np.int64)
    _plan(src, len(y), n_val, n_train, path / src.cls.base_folder)
    try:
        train_idx, val_idx = _indices(y, n_val, n_train)
    except ValueError as e:  # sklearn: a class too rare to stratify
        raise SweeperError(f"dataset {src.name}: cannot split {path / src.cls.base_folder} ({e})") from None
    x = train_set.data
    return DataSet(src.name, _split(x[train_idx], y[train_idx]), _split(x[val_idx], y[val_idx]),
                   _split(test_set.data, test_set.targets), src.num_classes, src.mean, src.std)
