"""Partial discovery at the trial (sweeper/discovery.py): which poisons a method is told of, what it receives,
what it caches, and GUS over the identified and unidentified poisons apart. Each test fails on a wrong
implementation: subsets that are not nested or not of size ⌈d·n⌉, a retain set without the unidentified
poisons (or with an identified one), a level-1 trial that differs from a trial without discovery, a cache
shared across levels, a GUS split that does not add up to the whole."""
import math

import pytest
import torch
from scipy import stats

from sweeper import discovery
from sweeper.basecache import base_models
from sweeper.data import Split
from sweeper.errors import SweeperError
from sweeper.methods import _common
from sweeper.trial import run_trial

LEVELS = (0.1, 0.25, 0.5, 1.0)
TIMERS = {"cost/seconds", "cost/trial_seconds", "trial/seconds"}


def config(scenario, base_dir, method, **kw):
    return {"scenario": scenario.as_dict(), "method": method, "base_dir": base_dir, "budgets": [0.02, 0.04], **kw}


@pytest.mark.parametrize("n, seed", [(30, 0), (240, 1), (7, 5)])
def test_levels_are_nested_uniform_subsets_of_ceil_d_n_poisons(n, seed):
    subsets = [set(discovery.identified_positions(n, seed, d).tolist()) for d in LEVELS]
    assert [len(s) for s in subsets] == [max(1, math.ceil(round(d * n, 9))) for d in LEVELS]
    assert all(a <= b for a, b in zip(subsets, subsets[1:]))  # the 0.1 subset lies inside the 0.25 one, ...
    assert subsets[-1] == set(range(n))
    assert discovery.identified_positions(n, seed, 0.5).tolist() == discovery.identified_positions(n, seed, 0.5).tolist()


def test_the_subset_is_drawn_from_the_seed_and_uniform_over_poisons():
    """Over 400 seeds, each of 40 poisons is identified at level 0.25 about a quarter of the time (a χ² test
    of the counts), and two seeds identify different poisons."""
    counts = torch.zeros(40)
    for seed in range(400):
        counts[discovery.identified_positions(40, seed, 0.25)] += 1
    assert stats.chisquare(counts.numpy()).pvalue > 0.001
    assert discovery.identified_positions(40, 0, 0.25).tolist() != discovery.identified_positions(40, 1, 0.25).tolist()


@pytest.mark.parametrize("level", [0.0, -0.1, 1.5, float("nan")])
def test_a_level_outside_0_to_1_is_one_clear_error(level):
    with pytest.raises(SweeperError, match="must be in \\(0, 1\\]"):
        discovery.identified_positions(10, 0, level)


def test_the_retain_set_holds_the_clean_points_and_the_unidentified_poisons():
    n = 50
    train = Split(torch.arange(n, dtype=torch.float32)[:, None], torch.arange(n))  # each point names itself
    forget = torch.tensor([3, 8, 11, 20, 21, 30, 44, 49])
    for level in LEVELS:
        retain, known = discovery.split(train, forget, seed=2, level=level)
        told = set(forget[discovery.identified_positions(len(forget), 2, level)].tolist())
        assert set(known.y.tolist()) == told
        assert set(retain.y.tolist()) == set(range(n)) - told  # clean points + the unidentified poisons
        assert set(forget.tolist()) - told <= set(retain.y.tolist())
        assert len(retain) + len(known) == n


def test_at_full_discovery_a_trial_is_bit_identical_to_one_without_the_key(tiny_scenario, base_dir):
    plain = run_trial(config(tiny_scenario, base_dir, "gd"))
    full = run_trial(config(tiny_scenario, base_dir, "gd", discovery=1.0))
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMERS} for r in rows]  # noqa: E731
    assert strip(plain) == strip(full)
    assert not any(k.startswith(("identified/", "unidentified/")) for k in full[0])


def test_a_method_receives_only_the_identified_poisons_as_its_forget_set(tiny_scenario, base_dir, monkeypatch):
    """What gd's unlearn is handed at level 0.25: the forget set is the identified poisons, the retain set
    everything else, the unidentified poisons with their noise as trained."""
    from sweeper.methods import gd

    seen = {}
    real = gd.unlearn
    monkeypatch.setattr(gd, "unlearn", lambda model, data, budget, **kw: seen.update(data=data) or real(model, data, budget, **kw))
    run_trial(config(tiny_scenario, base_dir, "gd", discovery=0.25, budgets=[0.02]))
    base = base_models(tiny_scenario, 0, base_dir)
    p = base.poisoning
    told = p.forget[discovery.identified_positions(len(p.forget), 0, 0.25)]
    data = seen["data"]
    assert torch.equal(data.forget.x, p.train.x[told]) and len(data.forget) == math.ceil(0.25 * len(p.forget))
    assert len(data.retain) == len(p.train) - len(told)
    unidentified = sorted(set(p.forget.tolist()) - set(told.tolist()))
    assert all(any(torch.equal(p.train.x[i], x) for x in data.retain.x) for i in unidentified[:3])
    assert data.cache_dir == base.path / "shared" / "discovery-0.25"


def test_forget_derived_caches_are_kept_per_level(tiny_scenario, base_dir):
    """SSD's importances are computed from the forget set: at another level they are other numbers, in
    another file."""
    for level in (1.0, 0.5):
        run_trial(config(tiny_scenario, base_dir, "ssd", discovery=level, budgets=[1.0]))
    shared = base_models(tiny_scenario, 0, base_dir).path / "shared"
    full = sorted(shared.glob("ssd_importances*.pt"))
    half = sorted((shared / "discovery-0.5").glob("ssd_importances*.pt"))
    assert len(full) == len(half) == 1
    a, b = (_common._read_checked(p) for p in (full[0], half[0]))
    assert a is not None and b is not None and a != b


def test_gus_over_identified_and_unidentified_poisons_adds_up_to_the_whole(tiny_scenario, base_dir):
    """The split is a partition of the poisons: counts and sums add up to the pooled GUS. On θ_retrain, which
    never saw the noise, each part is a mean of N(0, 1) scores (its z within the null's range)."""
    for method in ("none", "retrain"):
        (row,) = run_trial(config(tiny_scenario, base_dir, method, discovery=0.25))
        ident, unid = row["identified/gus/n_valid"], row["unidentified/gus/n_valid"]
        assert ident + unid == row["gus/n_valid"] and ident == math.ceil(0.25 * row["gus/n_valid"])
        assert row["identified/gus/sum"] + row["unidentified/gus/sum"] == pytest.approx(row["gus/sum"], rel=1e-5)
        if method == "retrain":
            assert abs(row["identified/gus/z"]) < 3.5 and abs(row["unidentified/gus/z"]) < 3.5
        else:
            assert row["unidentified/gus/z"] < 0  # θ_poisoned memorised the poisons it was never told of too


# -- retrain_identified: retraining without only the identified poisons --------------------------------------
def test_retrain_identified_at_level_1_is_theta_retrain(tiny_scenario, base_dir, tmp_path):
    """Trained as θ_retrain is (same initialisation, recipe, seed and data order) on the training set less
    the identified poisons: at level 1 that set is the clean retain set, and the model is θ_retrain."""
    from sweeper.basecache import identified_retrain

    base = base_models(tiny_scenario, 0, base_dir)
    state, manifest = identified_retrain(base, 1.0, tmp_path)
    assert all(torch.equal(state[k], base.retrain[k]) for k in base.retrain)
    assert manifest["retrain_units"] == base.retrain_units and manifest["n_identified"] == len(base.poisoning.forget)


def test_retrain_identified_never_saw_an_identified_poison_and_saw_every_other_point(tiny_scenario, base_dir,
                                                                                     tmp_path, monkeypatch):
    from sweeper import scenario as scenario_module
    from sweeper.basecache import identified_retrain

    seen = {}
    real = scenario_module.train_from_scratch
    monkeypatch.setattr(scenario_module, "train_from_scratch",
                        lambda model, split, recipe, seed: seen.update(split=split) or real(model, split, recipe, seed))
    base = base_models(tiny_scenario, 0, base_dir)
    p = base.poisoning
    identified_retrain(base, 0.25, tmp_path)
    told = set(p.forget[discovery.identified_positions(len(p.forget), 0, 0.25)].tolist())
    rows = {tuple(x.flatten().tolist()) for x in seen["split"].x}
    assert len(seen["split"]) == len(p.train) - len(told)
    assert not any(tuple(p.train.x[i].flatten().tolist()) in rows for i in told)
    assert all(tuple(p.train.x[i].flatten().tolist()) in rows for i in range(len(p.train)) if i not in told)


def test_retrain_identified_is_cached_per_level_checked_and_rebuilt_when_broken(tiny_scenario, base_dir, tmp_path):
    from sweeper import basecache

    base = base_models(tiny_scenario, 0, base_dir)
    names = {d: basecache.identified_name(tiny_scenario, 0, d) for d in (0.25, 0.5)}
    assert names[0.25] != names[0.5] and all(len(n) == 16 and int(n, 16) >= 0 for n in names.values())
    a, _ = basecache.identified_retrain(base, 0.25, tmp_path)
    b, _ = basecache.identified_retrain(base, 0.5, tmp_path)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # other training sets, other models
    entry = tmp_path / names[0.25]
    assert basecache.check_entry(entry, ("retrain_identified.pt",)) is None
    (entry / "retrain_identified.pt").write_bytes(b"broken")
    with pytest.warns(UserWarning, match="broken"):
        again, _ = basecache.identified_retrain(base, 0.25, tmp_path)
    assert all(torch.equal(a[k], again[k]) for k in a)  # rebuilt: deterministic training gives it back


def test_the_retrain_identified_trial_costs_its_own_retraining(tiny_scenario, base_dir):
    (row,) = run_trial(config(tiny_scenario, base_dir, "retrain_identified", discovery=0.25))
    base = base_models(tiny_scenario, 0, base_dir)
    n_told = math.ceil(0.25 * len(base.poisoning.forget))
    units = tiny_scenario.recipe.retrain_units(len(base.poisoning.train) - n_told)
    assert row["cost/units"] == units and row["cost/fraction"] == pytest.approx(units / base.retrain_units)
    assert row["cost/fraction"] > 1 and row["discovery"] == 0.25
    assert row["unidentified/gus/z"] < row["identified/gus/z"]  # it trained on the noise it was not told of


def test_a_level_pooled_over_seeds_stays_the_level(tiny_scenario, base_dir):
    """Three seeds' rows pooled: a mean of 0.1 three times is 0.10000000000000002, and the report's rows at
    level 0.1 would find no tuning trial (the quick discovery sweep showed every 0.1 row as not_run)."""
    rows = run_trial(config(tiny_scenario, base_dir, "gd", discovery=0.1, seeds=[0, 1, 2], budgets=[0.02]))
    assert rows[0]["discovery"] == 0.1
