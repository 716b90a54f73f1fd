"""Issue 23, loading once: the digits splits are computed once per machine and read back by every later
process without importing scikit-learn (~1.5 s per Ray worker), bit for bit what scikit-learn's split gives;
a broken cache file is computed again."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from sweeper.datasets import digits


def test_the_cached_splits_are_the_computed_ones_and_load_without_scikit_learn(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPER_DATA_CACHE", str(tmp_path))
    first = digits.load(n_val=200, n_test=250)
    assert digits.cache_file(200, 250).parent == tmp_path and digits.cache_file(200, 250).exists()
    computed = digits.splits(200, 250)
    for split, (x, y) in zip((first.train, first.val, first.test),
                             (("x_train", "y_train"), ("x_val", "y_val"), ("x_test", "y_test"))):
        assert np.array_equal(split.x.squeeze(1).numpy(), computed[x]) and np.array_equal(split.y.numpy(), computed[y])
    code = ("import sys; from sweeper.datasets import digits; d = digits.load(n_val=200, n_test=250); "
            "print('sklearn' in sys.modules, len(d.train), float(d.train.x.sum()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "SWEEPER_DATA_CACHE": str(tmp_path)})
    assert out.stdout.split() == ["False", str(len(first.train)), str(float(first.train.x.sum()))], out.stderr


def test_a_broken_cache_file_is_computed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPER_DATA_CACHE", str(tmp_path))
    path = digits.cache_file(300, 300)
    path.write_bytes(b"PK\x03\x04 not a whole npz")
    data = digits.load()
    assert np.array_equal(data.test.y.numpy(), digits.splits(300, 300)["y_test"])
    with np.load(path) as f:  # rewritten whole
        assert np.array_equal(f["y_test"], data.test.y.numpy())
