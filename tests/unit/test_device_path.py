"""The training data path (device-resident batches, on-device augmentation, autocast only on CUDA) and the
per-worker caches that let a reused Ray worker skip reloading a seed's data and base models."""
import json

import pytest
import torch

from sweeper import basecache, config, trial, workercache
from sweeper.data import generator
from sweeper.basecache import base_models
from sweeper.training import Recipe, augment, autocast, train_from_scratch
from sweeper.trial import evaluator


def test_augment_is_a_shifted_window_of_the_zero_padded_image_or_its_mirror():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    out = augment(x, generator(0, 7), pad=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        windows = [padded[i, :, dy:dy + 6, dx:dx + 6] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)


def test_augment_depends_on_the_seed_only_and_keeps_values_unclipped():
    x = torch.randn(64, 3, 8, 8) * 3  # poisoned inputs leave [0, 1]: nothing may clip them
    a, b = augment(x, generator(1, 7)), augment(x, generator(1, 7))
    assert torch.equal(a, b)
    assert not torch.equal(a, augment(x, generator(2, 7)))
    assert set(a.unique().tolist()) <= set(x.unique().tolist()) | {0.0}  # values moved, never rescaled
    flipped = augment(x, generator(1, 7), pad=0)  # no room to shift: each example is itself or its mirror
    flips = sum(torch.equal(flipped[i], x[i].flip(-1)) for i in range(64))
    assert sum(torch.equal(flipped[i], x[i]) for i in range(64)) + flips == 64
    assert 16 < flips < 48  # about half


def test_training_with_augmentation_runs_and_differs_from_without(tiny_scenario):
    data = tiny_scenario.load_data()
    plain = train_from_scratch(tiny_scenario.build_model(data, 0), data.train, Recipe(epochs=1), seed=0)
    aug = train_from_scratch(tiny_scenario.build_model(data, 0), data.train, Recipe(epochs=1, augment=True), seed=0)
    p, a = plain.state_dict(), aug.state_dict()
    assert any(not torch.equal(p[k], a[k]) for k in p if p[k].is_floating_point())


def test_autocast_only_on_cuda():
    cpu = torch.device("cpu")
    with autocast(Recipe(amp=True), cpu):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.parametrize("bad", ["1", "'yes'", "0.5"])
def test_recipe_switches_must_be_booleans(tmp_path, bad):
    path = tmp_path / "e.yaml"
    path.write_text("dataset: digits\nmodel: small_cnn\nattack: gaussian\nmethods: [gd]\nbudgets: [0.02]\n"
                    f"trials: 1\nseeds: [0]\nrecipe: {{augment: {bad}}}\n")
    with pytest.raises(config.SweeperError, match="recipe.augment must be true or false"):
        config.load(str(path))


def test_a_worker_loads_a_seeds_base_models_once(tiny_scenario, base_dir, monkeypatch):
    first = base_models(tiny_scenario, 0, base_dir)
    loads = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a[0]) or real(*a, **k))
    again = base_models(tiny_scenario, 0, base_dir)
    assert again is first and loads == []
    assert evaluator(again, torch.device("cpu")) is evaluator(first, torch.device("cpu"))


def test_a_changed_entry_is_reloaded_not_served_from_memory(tiny_scenario, tmp_path):
    first = base_models(tiny_scenario, 0, tmp_path)
    folder = basecache.base_folder(tiny_scenario, 0, tmp_path)
    basecache._discard(folder)  # another process rebuilt it: same path, new files
    second = base_models(tiny_scenario, 0, tmp_path)
    assert second is not first
    assert json.loads((folder / "manifest.json").read_text())["seed"] == 0


def test_poisoning_is_stored_as_plain_tensors(tiny_scenario, base_dir):
    folder = basecache.base_folder(tiny_scenario, 0, base_dir)
    state = torch.load(folder / "poisoning.pt", weights_only=True)  # raises on anything but tensors/numbers
    assert set(state) == {"train_x", "train_y", "forget", "context", "craft_seconds", "craft_units"}


@pytest.mark.parametrize("entries, loads", [(5, 5), (0, 10)])
def test_a_worker_sized_for_the_sweeps_seeds_loads_each_once(tiny_scenario, base_dir, monkeypatch, entries, loads):
    """Issue 23: five seeds met twice each, as a reused worker meets them. Sized for them (cache_entries = the
    sweep's seeds), each seed's base models and evaluator load once; at the old fixed bound of 4 the first
    seeds are evicted before they come round again (the control: every meeting reloads)."""
    monkeypatch.setattr(workercache, "WORKER_CACHE", workercache.DEFAULT)
    monkeypatch.setattr(workercache, "_SET", None)
    for seed in range(5):
        base_models(tiny_scenario, seed, base_dir)  # built (or found) before counting
    basecache._BASES.clear()
    trial._EVALUATORS.clear()
    caches = (basecache._BASES, trial._EVALUATORS)
    before = [workercache.MISSES[id(c)] for c in caches]
    for _ in range(2):
        for seed in range(5):
            trial.run_trial({"scenario": tiny_scenario, "method": "none", "base_dir": str(base_dir), "budgets": [0.1],
                             "seeds": [seed], "membership": False, "cache_entries": entries})
    assert [workercache.MISSES[id(c)] - n for c, n in zip(caches, before)] == [loads, loads]


def test_the_worker_cache_is_bounded(tiny_scenario, tmp_path, monkeypatch):
    monkeypatch.setattr(workercache, "WORKER_CACHE", 2)
    basecache._BASES.clear()
    for seed in range(3):
        base_models(tiny_scenario, seed, tmp_path)
    assert len(basecache._BASES) == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_uses_bf16_and_evaluation_stays_fp32(tiny_scenario):
    from sweeper.training import full_precision

    data = tiny_scenario.load_data()
    model = train_from_scratch(tiny_scenario.build_model(data, 0), data.train.to("cuda"), Recipe(epochs=1), seed=0)
    x = data.val.x[:8].to("cuda")
    with autocast(Recipe(), torch.device("cuda")):
        assert model(x).dtype == torch.bfloat16
        with full_precision():
            assert model(x).dtype == torch.float32
