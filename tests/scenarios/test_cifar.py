"""CIFAR-10 / CIFAR-100 through torchvision's real classes, on small folders written here in the real on-disk
format (Python 2 pickles, as the official tarballs hold), and the ResNet-18 that goes with them."""
from __future__ import annotations

import copy
import os
import pickle
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torchvision.datasets import CIFAR10, CIFAR100

from sweeper import cli, config
from sweeper import methods as _methods
from sweeper.data import DataSet, Split
from sweeper.datasets import _cifar, cifar10, cifar100
from sweeper.errors import SweeperError
from sweeper.methods._common import last_blocks, reinitialise
from sweeper.registry import methods, models
from sweeper.basecache import base_models
from sweeper.scenario import Scenario
from sweeper.training import Recipe
from helpers import SWEEPER, run_method, states_equal

QUICK = Path(__file__).resolve().parents[2] / "experiments" / "cifar10_quick.yaml"


class _Py2Pickler(pickle._Pickler):
    """Writes `bytes` as Python 2 `str`, as in the official files: keys (and numpy's raw buffer) then read back
    as `str` with torchvision's encoding="latin1" and as b"data" with encoding="bytes"."""
    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: bytes):
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def write_cifar(root: Path, kind: str = "cifar10", n_train: int = 600, n_test: int = 200, seed: int = 0) -> dict:
    """A CIFAR-format folder under `root`; returns what was written (uint8 rows of 3072 = R, G, B planes).
    Each class has its own blocky colour template plus noise, so a model can learn a little."""
    classes = 10 if kind == "cifar10" else 100
    rng = np.random.default_rng(seed)
    templates = np.kron(rng.uniform(60, 195, (classes, 3, 4, 4)), np.ones((8, 8)))

    def images(y):
        return np.clip(templates[y] + rng.normal(0, 70, (len(y), 3, 32, 32)), 0, 255).astype(np.uint8).reshape(len(y), 3072)

    y_train, y_test = rng.permutation(np.arange(n_train) % classes), np.arange(n_test) % classes
    x_train, x_test = images(y_train), images(y_test)
    if kind == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for i, part in enumerate(np.array_split(np.arange(n_train), 5)):
            _dump(folder / f"data_batch_{i + 1}", {b"batch_label": b"training batch %d of 5" % (i + 1),
                                                   b"labels": y_train[part].tolist(), b"data": x_train[part],
                                                   b"filenames": [b"img.png"] * len(part)})
        _dump(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": y_test.tolist(),
                                      b"data": x_test, b"filenames": [b"img.png"] * n_test})
        _dump(folder / "batches.meta", {b"num_cases_per_batch": n_train // 5, b"num_vis": 3072,
                                        b"label_names": [b"class%d" % c for c in range(classes)]})
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            _dump(folder / name, {b"batch_label": name.encode(), b"fine_labels": y.tolist(),
                                  b"coarse_labels": (y // 5).tolist(), b"data": x, b"filenames": [b"img.png"] * len(y)})
        _dump(folder / "meta", {b"fine_label_names": [b"fine%d" % c for c in range(classes)],
                                b"coarse_label_names": [b"coarse%d" % c for c in range(20)]})
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


@pytest.fixture(scope="module")
def folder10(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar10")
    return root, write_cifar(root)


@pytest.fixture(scope="module")
def folder100(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar100")
    return root, write_cifar(root, "cifar100")


def as_images(rows: np.ndarray) -> torch.Tensor:
    """What the loader must return for written rows: NCHW float32 in [0, 1]."""
    return torch.from_numpy(rows.reshape(-1, 3, 32, 32)).float() / 255


def refusal(fn, **kw) -> str:
    with pytest.raises(SweeperError) as e:
        fn(**kw)
    assert "\n" not in str(e.value)
    return str(e.value)


# -- data ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module, fixture", [(cifar10, "folder10"), (cifar100, "folder100")])
def test_without_skip_checksums_torchvision_refuses_written_files_in_one_line(request, module, fixture):
    root, _ = request.getfixturevalue(fixture)
    msg = refusal(module.load, root=str(root), n_val=100)
    assert "md5" in msg and "--skip-checksums" in msg and str(root) in msg


def test_skip_checksums_drops_exactly_the_md5_sums_and_leaves_torchvision_alone(folder10):
    for cls in (CIFAR10, CIFAR100):
        lax = _cifar.unchecked(cls)
        assert issubclass(lax, cls) and lax.base_folder == cls.base_folder
        assert [f for f, _ in lax.train_list + lax.test_list] == [f for f, _ in cls.train_list + cls.test_list]
        assert all(md5 is None for _, md5 in lax.train_list + lax.test_list) and lax.meta["md5"] is None
        assert {**lax.meta, "md5": cls.meta["md5"]} == cls.meta
        assert all(md5 for _, md5 in cls.train_list + cls.test_list) and cls.meta["md5"]  # torchvision untouched
    root, _ = folder10
    with pytest.raises(RuntimeError):  # torchvision's own class still checks
        CIFAR10(str(root), train=False)
    assert len(_cifar.unchecked(CIFAR10)(str(root), train=False).data) == 200


def test_cifar10_splits_sizes_units_layout_and_determinism(folder10):
    root, written = folder10
    d = cifar10.load(root=str(root), n_val=100, skip_checksums=True)
    assert (len(d.train), len(d.val), len(d.test), d.num_classes) == (500, 100, 200, 10)
    for s in (d.train, d.val, d.test):
        assert s.x.dtype == torch.float32 and s.y.dtype == torch.int64 and s.x.shape[1:] == (3, 32, 32)
        assert s.x.is_contiguous() and 0 <= float(s.x.min()) and float(s.x.max()) <= 1
    assert torch.equal(d.test.x, as_images(written["x_test"])) and d.test.y.tolist() == written["y_test"].tolist()
    assert d.val.y.bincount().tolist() == [10] * 10  # stratified
    # train and val partition the official train set
    rows = {r.tobytes(): y for r, y in zip(written["x_train"], written["y_train"])}
    got = torch.cat([d.train.x, d.val.x]).mul(255).round().to(torch.uint8).reshape(-1, 3072).numpy()
    assert sorted(r.tobytes() for r in got) == sorted(rows)
    assert [rows[r.tobytes()] for r in got] == torch.cat([d.train.y, d.val.y]).tolist()
    again = cifar10.load(root=str(root), n_val=100, skip_checksums=True)
    assert all(torch.equal(a.x, b.x) and torch.equal(a.y, b.y) for a, b in
               ((d.train, again.train), (d.val, again.val), (d.test, again.test)))
    small = cifar10.load(root=str(root), n_val=100, n_train=300, skip_checksums=True)
    assert len(small.train) == 300 and torch.equal(small.val.x, d.val.x)  # the subsample never moves val
    assert small.train.y.bincount().tolist() == [30] * 10
    assert (d.mean, d.std) == (cifar10.SOURCE.mean, cifar10.SOURCE.std)  # fixed, not the subsample's


def test_cifar100_reads_fine_labels(folder100):
    root, written = folder100
    d = cifar100.load(root=str(root), n_val=100, skip_checksums=True)
    assert (len(d.train), len(d.val), len(d.test), d.num_classes) == (500, 100, 200, 100)
    assert torch.equal(d.test.x, as_images(written["x_test"])) and d.test.y.tolist() == written["y_test"].tolist()
    assert d.val.y.bincount(minlength=100).tolist() == [1] * 100


def test_a_wrong_folder_is_one_line_naming_it_and_the_layout(tmp_path, folder10):
    msg = refusal(cifar10.load, root=str(tmp_path / "nope"))
    assert f"{tmp_path / 'nope'} does not exist" in msg and "cifar-10-batches-py/ holding data_batch_1" in msg
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"")
    msg = refusal(cifar10.load, root=str(tmp_path), skip_checksums=True)
    assert "lacks the CIFAR files data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, batches.meta" in msg
    assert "needs root" in refusal(cifar10.load)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "batches.meta"):
        (tmp_path / "cifar-10-batches-py" / name).write_bytes(b"not a pickle")
    assert "cannot read" in refusal(cifar10.load, root=str(tmp_path), skip_checksums=True)
    root, _ = folder10
    assert "n_val=595 leaves fewer than 10 of the 600" in refusal(cifar10.load, root=str(root), n_val=595,
                                                                  skip_checksums=True)
    assert "n_train must be an integer in [10, 500]" in refusal(cifar10.load, root=str(root), n_val=100, n_train=501,
                                                                 skip_checksums=True)


# -- experiment files and the command line --------------------------------------------------------------
def test_data_root_from_file_or_flag_becomes_absolute(tmp_path, folder10, monkeypatch):
    root, _ = folder10
    monkeypatch.chdir(root.parent)
    exp = config.load(QUICK, "tiny", data_root=root.name, skip_checksums=True)
    assert exp.scenario.dataset_params["root"] == str(root) and exp.scenario.dataset_params["skip_checksums"] is True
    doc = (QUICK.read_text() + f"data_root: {root.name}\n").replace("{name: cifar10, n_val: 5000}",
                                                                      "{name: cifar10, n_val: 5000, skip_checksums: true}")
    (tmp_path / "own.yaml").write_text(doc)
    assert config.load(tmp_path / "own.yaml", "tiny").scenario.dataset_params["root"] == str(root)
    with pytest.raises(SweeperError, match="does not exist"):  # the flag overrides the file
        config.load(tmp_path / "own.yaml", "tiny", data_root=str(tmp_path / "elsewhere"))
    (tmp_path / "both.yaml").write_text(doc.replace("n_val: 5000,", f"root: {root}, n_val: 5000,"))
    with pytest.raises(SweeperError, match="data_root and dataset.root both"):
        config.load(tmp_path / "both.yaml", "tiny")
    with pytest.raises(SweeperError, match="--skip-checksums does not apply: dataset digits reads no data folder"):
        config.load("quickstart", skip_checksums=True)


def test_validate_cifar10_quick_with_the_flags(tmp_path, folder10, capsys):
    write_cifar(tmp_path, n_train=5_050, n_test=50)  # the quick profile's 5,000 validation images fit
    assert cli.main(["validate", str(QUICK), "--data-root", str(tmp_path), "--skip-checksums"]) == 0
    assert capsys.readouterr().out.startswith("ok: cifar10_quick (profile quick): cifar10 / resnet18 / gaussian, backdoor")
    root, _ = folder10
    assert cli.main(["validate", str(QUICK), "--profile", "tiny", "--data-root", str(root), "--skip-checksums"]) == 0
    assert capsys.readouterr().out.startswith("ok: cifar10_quick (profile tiny)")


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_missing_data_root_is_exit_2_and_one_line(tmp_path, capsys, command):
    wd = tmp_path / "wd"
    extra = ["--workdir", str(wd)] if command == "run" else []
    assert cli.main([command, str(QUICK), "--data-root", str(tmp_path / "missing"), "--skip-checksums", *extra]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1 and out.err.startswith("sweeper: error: ")
    assert f"data folder {tmp_path / 'missing'} does not exist" in out.err and not wd.exists()


# -- ResNet-18 ------------------------------------------------------------------------------------------
def stub(channels: int = 3, classes: int = 10) -> DataSet:
    s = Split(torch.zeros(2, channels, 32, 32), torch.zeros(2, dtype=torch.long))
    return DataSet("stub", s, s, s, classes, (0.5,) * channels, (0.25,) * channels)


def test_resnet18_shape_blocks_and_width():
    torch.manual_seed(0)
    model = models.get("resnet18")(stub(classes=7), width=4).eval()
    assert model(torch.rand(5, 3, 32, 32)).shape == (5, 7)
    assert len(model.blocks) == 6  # stem, four stages, head
    assert [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)][:1] == [4]
    assert model.blocks[4][0].conv1.out_channels == 32 and not any(
        isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    assert sum(p.numel() for p in models.get("resnet18")(stub()).parameters()) == 11_173_962  # the CIFAR ResNet-18


@pytest.mark.parametrize("k", [1, 2, 3])
def test_reinitialising_the_last_k_blocks_touches_exactly_those(k):
    torch.manual_seed(0)
    model = models.get("resnet18")(stub(), width=4)
    with torch.no_grad():  # move every tensor off its default value, so a re-initialisation is visible
        for t in model.state_dict().values():
            t.add_(1 if t.dtype == torch.long else 0.5 + torch.rand_like(t))
    before = copy.deepcopy(model.state_dict())
    reinitialise(last_blocks(model, k), torch.Generator().manual_seed(1))
    after = model.state_dict()
    cut = f"blocks.{6 - k}."
    for key in before:
        touched = any(key.startswith(f"blocks.{i}.") for i in range(6 - k, 6))
        assert torch.equal(before[key], after[key]) != touched, key
    assert any(key.startswith(cut) for key in after)


# -- training on the tiny folder ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cifar_base(folder10, tmp_path_factory):
    root, _ = folder10
    scenario = Scenario("cifar10", "resnet18", "gaussian", {"root": str(root), "n_val": 100, "skip_checksums": True},
                        {"width": 8}, {"fraction": 0.1, "eps": 0.3}, Recipe(epochs=1, batch_size=16))
    start = time.perf_counter()
    base = base_models(scenario, 0, tmp_path_factory.mktemp("base"))
    base.seconds = time.perf_counter() - start
    return base


def test_a_base_model_trains_on_the_tiny_folder(cifar_base):
    m = cifar_base.manifest
    assert m["n_train"] == 500 and m["n_clean"] == 450 and m["retrain_units"] == 3 * 1 * 29 * 16  # 450 examples in 29 whole batches of 16
    for which in ("poisoned", "retrain"):
        assert m["metrics"][which]["acc/val"] > 0.2, m["metrics"]  # chance is 0.1
    assert cifar_base.seconds < 30


def test_eu_k_on_resnet18_keeps_earlier_stages_bit_identical(cifar_base):
    before = cifar_base.poisoned
    model, _, _ = run_method(cifar_base, "eu_k", (0.05,), k=2, lr=0.01)
    after = model.state_dict()
    frozen = [key for key in after if int(key.split(".")[1]) < 4]
    assert any("running_var" in key for key in frozen)
    assert states_equal({key: after[key] for key in frozen}, {key: before[key] for key in frozen})
    for key in after:
        if int(key.split(".")[1]) >= 4 and after[key].is_floating_point():
            assert not torch.equal(after[key], before[key]), key


@pytest.mark.parametrize("name", config.searchable_methods("image"))
def test_every_image_method_runs_on_resnet18_within_its_budget(cifar_base, name):
    """What `methods: all` sweeps on CIFAR, method by method outside a sweep (the sweep below runs two).
    Fixed-cost methods get a budget they fit in: SSD costs more than this 1-epoch scenario's retraining."""
    fixed = _methods.kind(methods.get(name)) == "fixed"
    retrain_units = 10 * cifar_base.retrain_units if fixed else None
    model, budget, seen = run_method(cifar_base, name, (0.02, 0.3), retrain_units=retrain_units)
    assert [f for f, _, _ in seen] == ([0.3] if fixed else [0.02, 0.3])  # fixed: over budget at 0.02 only
    assert 0 < budget.spent <= budget.total
    assert not states_equal(model.state_dict(), cifar_base.poisoned)
    assert all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())


@pytest.mark.slow
def test_cifar10_quick_tiny_sweep_end_to_end(tmp_path, folder10):
    """`sweeper run cifar10_quick --profile tiny` on the 600/200 folder from the installed CLI: both attacks,
    ResNet-18, one trial of two methods at two budgets, 2 epochs instead of 4: base models are most of
    its time (every image method on ResNet-18: the test above)."""
    root, _ = folder10
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run([SWEEPER, "run", str(QUICK), "--profile", "tiny", "--data-root", str(root), "--skip-checksums",
                           "--trials", "1", "--workdir", "wd", "methods=[gd,scrub]", "budgets=[0.04,0.1]",
                           "recipe.epochs=2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    s = pd.read_csv(tmp_path / "wd" / "report" / "cifar10_quick" / "summary.csv")
    searched = s[s.method.isin(["gd", "scrub"])]
    assert sorted(set(zip(searched.attack, searched.method, searched.budget))) == sorted(
        (a, m, b) for a in ("backdoor", "gaussian") for m in ("gd", "scrub") for b in (0.04, 0.1))
    assert set(s.method) == {"gd", "scrub", "none", "retrain"}
    assert not searched.status.isin(["reference_failed", "fresh_failed", "no_fresh"]).any()  # nothing failed
