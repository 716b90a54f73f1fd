"""The `scratch` baseline does what it is defined to do (sweeper/methods/scratch.py): it starts over from the
scenario's initialisation (nothing of θ_poisoned kept), its anytime schedule is θ_retrain's training cut at the
budget, and its compressed schedule is one run per checkpoint, each charged against that checkpoint alone."""
import pandas as pd
import pytest
import torch

from helpers import run_method, states_equal
from sweeper.methods._common import TRAIN_STEP
from sweeper.report.selection import tuning_cost
from sweeper.scenario import epochs_to_quality
from sweeper.trial import TrialConfig, run_trial


def initial_state(base):
    return base.scenario.build_model(base.data, base.seed).state_dict()


@pytest.mark.parametrize("schedule", ["anytime", "compressed"])
def test_scratch_keeps_no_tensor_of_theta_poisoned(tiny_base, schedule):
    model, budget, seen = run_method(tiny_base, "scratch", (0.02, 0.04), schedule=schedule, lr=0.0)
    after, poisoned, init = model.state_dict(), tiny_base.poisoned, initial_state(tiny_base)
    assert budget.spent > 0 and len(seen) == 2
    for key, value in after.items():
        assert not torch.equal(value, poisoned[key]), key  # every tensor replaced, BatchNorm statistics too
    for name, p in model.named_parameters():  # at lr 0 no step moves a parameter: they are the initial ones
        assert torch.equal(p, init[name]), name


def test_the_anytime_checkpoint_of_a_longer_trial_is_the_shorter_trial(tiny_base):
    _, _, long = run_method(tiny_base, "scratch", (0.04, 0.10), lr=0.05)
    _, _, short = run_method(tiny_base, "scratch", (0.04,), lr=0.05)
    assert long[0][:2] == short[0][:2]
    assert states_equal(long[0][2], short[0][2])
    assert not states_equal(long[1][2], short[0][2])


def test_anytime_at_budget_one_and_the_recipe_lr_is_theta_retrain_bit_for_bit(tiny_base):
    recipe = tiny_base.scenario.recipe
    model, budget, seen = run_method(tiny_base, "scratch", (1.0,), schedule="anytime", lr=recipe.lr)
    assert budget.spent == tiny_base.retrain_units == seen[0][1]  # C_retrain is exactly the recipe's steps
    assert states_equal(model.state_dict(), tiny_base.retrain)


def test_compressed_runs_once_per_checkpoint_each_charged_against_its_own_budget(tiny_base):
    per_step = TRAIN_STEP * tiny_base.scenario.recipe.batch_size
    c = tiny_base.retrain_units
    _, budget, seen = run_method(tiny_base, "scratch", (0.02, 0.04), schedule="compressed", lr=0.05)
    units = [u for _, u, _ in seen]
    for (fraction, spent, _) in seen:  # each run as long as its checkpoint buys, in whole steps
        assert round(fraction * c) - per_step < spent <= round(fraction * c)
    assert budget.trial_units == sum(units)  # the trial paid for both runs
    _, _, alone = run_method(tiny_base, "scratch", (0.04,), schedule="compressed", lr=0.05)
    assert states_equal(seen[1][2], alone[0][2])  # the 0.04 run does not continue the 0.02 one
    _, _, cut = run_method(tiny_base, "scratch", (0.02, 0.04), schedule="anytime", lr=0.05)
    assert not states_equal(seen[0][2], cut[0][2])  # the annealed run differs from the cut one


def test_tuning_cost_charges_a_compressed_trial_the_sum_of_its_runs(tiny_scenario, base_dir):
    rows = {}
    for schedule in ("anytime", "compressed"):
        cfg = TrialConfig(scenario=tiny_scenario, method="scratch", base_dir=base_dir, budgets=[0.02, 0.04],
                          hparams={"schedule": schedule, "lr": 0.05}, membership=False)
        rows[schedule] = run_trial(cfg)
    anytime, compressed = rows["anytime"], rows["compressed"]
    assert [r["cost/trial_fraction"] for r in anytime] == [r["cost/fraction"] for r in anytime]
    assert [r["cost/trial_seconds"] for r in anytime] == [r["cost/seconds"] for r in anytime]
    assert compressed[1]["cost/trial_fraction"] == pytest.approx(compressed[0]["cost/fraction"]
                                                                 + compressed[1]["cost/fraction"])
    # the 0.04 row's seconds are its own run's; the trial's also hold the 0.02 run's (up to clock noise)
    assert compressed[1]["cost/trial_seconds"] == pytest.approx(compressed[0]["cost/seconds"]
                                                                + compressed[1]["cost/seconds"], rel=0.05)
    frame = pd.DataFrame([{**r, "attack": "gaussian", "method": "scratch", "trial_id": s, "n_seeds": 1}
                          for s, trial in rows.items() for r in trial])
    assert tuning_cost(frame)[("gaussian", "scratch")] == pytest.approx(
        anytime[1]["cost/fraction"] + compressed[0]["cost/fraction"] + compressed[1]["cost/fraction"])


def test_the_retrain_curve_gives_the_epochs_to_the_retrains_quality(tiny_base):
    curve = tiny_base.manifest["retrain_curve"]
    assert len(curve) == tiny_base.scenario.recipe.epochs
    assert curve[-1] == tiny_base.manifest["metrics"]["retrain"]["acc/val"]  # the last epoch is θ_retrain
    assert epochs_to_quality([0.5, 0.8, 0.93, 0.91, 0.95], 0.95, 0.02) == 3
    assert epochs_to_quality([0.5, 0.96], 0.95, 0.02) == 2 and epochs_to_quality([], 0.9, 0.02) is None
