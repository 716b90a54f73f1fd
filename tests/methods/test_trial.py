"""The trial function: base models trained once and shared, metrics at every checkpoint, references."""
import math

import pytest

from sweeper import scenario as scenario_module
from sweeper.trial import pool, run_trial

METRICS = ["acc/val", "acc/test", "gus/mean", "gus/z", "gus/n_valid", "gus/tpr_at_1fpr", "mia/auc",
           "mia/tpr_at_1fpr", "attack/effect", "removal", "objective", "cost/units", "cost/fraction",
           "cost/seconds", "budget"]
TIMERS = {"cost/seconds", "cost/trial_seconds", "trial/seconds"}


def config(scenario, base_dir, method, **kw):
    return {"scenario": scenario.as_dict(), "method": method, "base_dir": base_dir,
            "budgets": [0.02, 0.04, 0.06, 0.08, 0.10], **kw}


def test_several_trials_share_one_training(tmp_path, tiny_scenario, monkeypatch):
    calls = []
    real = scenario_module.train_from_scratch
    monkeypatch.setattr(scenario_module, "train_from_scratch", lambda *a, **k: calls.append(1) or real(*a, **k))
    base_dir = str(tmp_path)
    for method in ["gd", "ga", "none", "retrain", "gd"]:
        run_trial(config(tiny_scenario, base_dir, method, budgets=[0.02]))
    assert len(calls) == 2  # θ_poisoned and θ_retrain, once, for five trials
    assert [p.name for p in tmp_path.iterdir()] == [tiny_scenario.key(0)]


def test_trial_reports_every_metric_at_every_checkpoint(tiny_scenario, base_dir):
    seen = []
    rows = run_trial(config(tiny_scenario, base_dir, "gd", budgets=[0.02, 0.04, 0.06]), seen.append)
    assert rows == seen and [r["budget"] for r in rows] == [0.02, 0.04, 0.06]
    for r in rows:
        assert set(METRICS) <= set(r)
        assert r["cost/fraction"] <= r["budget"] and r["cost/units"] > 0
    assert rows[0]["cost/units"] < rows[1]["cost/units"] < rows[2]["cost/units"]


def test_same_configuration_and_seed_reproduce_bit_for_bit(tiny_scenario, base_dir):
    cfg = config(tiny_scenario, base_dir, "ngd", budgets=[0.02, 0.04], hparams={"lr": 0.02, "sigma": 1.0e-3})
    a, b = run_trial(cfg), run_trial(cfg)
    assert [{k: v for k, v in r.items() if k not in TIMERS} for r in a] == \
           [{k: v for k, v in r.items() if k not in TIMERS} for r in b]


def test_references_are_evaluated_once_at_their_cost(tiny_scenario, base_dir):
    (none,) = run_trial(config(tiny_scenario, base_dir, "none"))
    (retrain,) = run_trial(config(tiny_scenario, base_dir, "retrain"))
    assert none["budget"] == 0.0 and none["cost/units"] == 0 and none["removal"] == 0.0
    assert retrain["budget"] == 1.0 and retrain["cost/fraction"] == 1.0


def test_pooling_over_seeds_pools_gus_over_all_poisons(tiny_scenario, base_dir):
    one = [run_trial(config(tiny_scenario, base_dir, "none", seeds=[s]))[0] for s in (0, 1)]
    (both,) = run_trial(config(tiny_scenario, base_dir, "none", seeds=[0, 1]))
    n = one[0]["gus/n_valid"] + one[1]["gus/n_valid"]
    assert both["gus/n_valid"] == n
    assert both["gus/z"] == pytest.approx((one[0]["gus/sum"] + one[1]["gus/sum"]) / math.sqrt(n))
    assert both["acc/val"] == pytest.approx((one[0]["acc/val"] + one[1]["acc/val"]) / 2)


@pytest.mark.slow
def test_none_shows_the_poisons_and_retrain_does_not(quickstart_scenario, base_dir):
    """Pooled over 3 seeds of the quickstart scenario (the issue's acceptance bar)."""
    (none,) = run_trial(config(quickstart_scenario, base_dir, "none", seeds=[0, 1, 2]))
    (retrain,) = run_trial(config(quickstart_scenario, base_dir, "retrain", seeds=[0, 1, 2]))
    assert none["gus/z"] < -6
    assert abs(retrain["gus/z"]) < 3


def test_pooled_objective_is_recomputed_not_averaged():
    """One seed within the accuracy tolerance, one far outside: the pooled accuracy gap (0.06) breaks
    the constraint, so the pooled objective is the penalty, not the mean of removal and penalty."""
    from sweeper.trial import pool

    base = {"removal": 0.8, "retrain/acc_val": 0.99, "attack/effect_se": 0.1}
    ok = {**base, "acc/val": 0.98, "objective": 0.8}
    bad = {**base, "acc/val": 0.88, "objective": -1.11}
    pooled = pool([ok, bad])
    assert pooled["acc/val"] == pytest.approx(0.93)
    assert pooled["objective"] == pytest.approx(-1.06)
    assert pooled["attack/effect_se"] == pytest.approx(0.1 / math.sqrt(2))


def test_an_ineffective_seed_is_not_a_diverged_one():
    """m_poisoned == m_retrain on a seed: removal is undefined, the objective scores accuracy only."""
    from sweeper.metrics import DIVERGED
    from sweeper.trial import pool, seed_objective

    row = {"removal": math.nan, "acc/val": 0.98, "retrain/acc_val": 0.99, "attack/ineffective": 1.0,
           "attack/effect_se": 0.1}
    assert seed_objective(row, True) == 0.0
    assert seed_objective({**row, "acc/val": 0.5}, True) == pytest.approx(-1.49)
    pooled = pool([{**row, "objective": 0.0}, {**row, "objective": 0.0}])
    assert math.isnan(pooled["removal"]) and pooled["objective"] != DIVERGED
    mixed = pool([{**row, "objective": 0.0}, {**row, "removal": 0.4, "attack/ineffective": 0.0, "objective": 0.4}])
    assert mixed["removal"] == pytest.approx(0.4) and mixed["objective"] == pytest.approx(0.4)


def test_pooled_budget_is_the_exact_checkpoint():
    """(0.1 + 0.1 + 0.1) / 3 != 0.1 in floating point; budgets are keys (ASHA, selection, report)."""
    from sweeper.trial import pool

    row = {"budget": 0.1, "removal": 0.5, "acc/val": 0.98, "retrain/acc_val": 0.99, "objective": 0.5}
    assert pool([row, row, row])["budget"] == 0.1


def test_a_tuning_trial_skips_membership_inference_and_nothing_else(tiny_scenario, base_dir):
    """Tuning trials run without MIA (the report reads it from fresh runs): the other metrics are those of
    the same trial with it, bit for bit, so skipping it changes no tuning decision."""
    full = run_trial(config(tiny_scenario, base_dir, "gd", budgets=[0.02, 0.04]))
    lean = run_trial(config(tiny_scenario, base_dir, "gd", budgets=[0.02, 0.04], membership=False))
    for a, b in zip(full, lean):
        assert not any(k.startswith("mia/") for k in b) and any(k.startswith("mia/") for k in a)
        same = {k: v for k, v in a.items() if not k.startswith("mia/") and k not in TIMERS}
        assert same == {k: v for k, v in b.items() if k not in TIMERS}


@pytest.mark.parametrize("method", ["gd", "scratch", "ssd"])
def test_seeds_in_step_compute_what_each_seed_computes_alone(tiny_scenario, base_dir, method):
    """A trial runs its seeds in step (sweeper/instep.py); each seed's checkpoints are those of a trial on that
    seed alone, pooled (anytime, restarting and fixed-cost methods)."""
    budgets = [0.02, 0.5, 1.0] if method == "ssd" else [0.02, 0.06, 0.10]  # ssd's fixed cost passes 0.10 here
    cfg = config(tiny_scenario, base_dir, method, budgets=budgets, membership=False)
    joint = run_trial({**cfg, "seeds": [0, 1]})
    alone = [run_trial({**cfg, "seeds": [s]}) for s in (0, 1)]
    pooled = [pool(list(rows)) for rows in zip(*alone)]
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMERS} for r in rows]  # noqa: E731
    assert len(joint) == len(pooled) > 0
    assert repr(strip(joint)) == repr(strip(pooled))  # repr: NaN equals NaN


def test_a_trial_stopped_at_its_first_checkpoint_unlearned_no_seed_past_it(tiny_scenario, base_dir, monkeypatch):
    """ASHA stops a trial by raising in its report: no seed has spent more than the first checkpoint (the
    unlearning the earlier seeds did past it was thrown away when seeds ran one after the other)."""
    from sweeper import budget as budget_module

    spent: dict[int, list[int]] = {}
    real = budget_module.Budget.charge

    def charge(self, units):
        real(self, units)
        spent.setdefault(id(self), []).append(self.spent)

    monkeypatch.setattr(budget_module.Budget, "charge", charge)

    class Stop(Exception):
        pass

    def stop(_):
        raise Stop

    cfg = config(tiny_scenario, base_dir, "gd", budgets=[0.02, 0.10], seeds=[0, 1, 2], membership=False)
    with pytest.raises(Stop):
        run_trial(cfg, stop)
    (one,) = run_trial({**cfg, "budgets": [0.02], "seeds": [0]})
    assert len(spent) == 3 + 1  # every seed of the stopped trial started, and the check trial
    assert max(max(v) for v in spent.values()) == one["cost/units"]  # nobody went past the 0.02 checkpoint
